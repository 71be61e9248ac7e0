//! The send side as a `futures::Sink` and a `tower::Service`, and user tower
//! layers added to the socket's send stack with `SocketBuilder::layer`.

mod common;

use std::time::Duration;

use common::{numbered, recv, within};
use futures::{SinkExt, StreamExt};
use smartsock::patterns::{Message, SendErrorKind};
use smartsock::{Bytes, Error, ErrorKind, PeerId, Socket, WhenFull};
use tower::limit::ConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Service, ServiceExt};

/// `client` (built by the caller) connected to a fresh server.
async fn connect(client: &Socket) -> Result<Socket, Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    client.connect(&addr.to_string())?;
    within("the peer", client.wait_for_peers(1)).await;
    Ok(server)
}

#[tokio::test]
async fn sender_as_a_sink() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;
    let mut sink = client.sender();
    sink.send(Bytes::from_static(b"one")).await?;
    sink.feed(Bytes::from_static(b"two")).await?;
    sink.flush().await?;
    let mut rest = futures::stream::iter((0..100).map(|i| Ok(numbered(i))));
    within("send_all", sink.send_all(&mut rest)).await?;
    sink.close().await?;

    assert_eq!(recv(&server).await, "one");
    assert_eq!(recv(&server).await, "two");
    for i in 0..100 {
        assert_eq!(recv(&server).await, numbered(i));
    }
    Ok(())
}

#[tokio::test]
async fn sender_as_a_sink_reports_a_failed_send() -> Result<(), Error> {
    let client = Socket::builder().max_frame_length(64).build()?;
    let _server = connect(&client).await?;
    let mut sink = client.sender();
    let error = within("a failed send", sink.send(Bytes::from(vec![0u8; 100]))).await.expect_err("too large");
    assert!(matches!(error.send_kind(), Some(SendErrorKind::TooLarge { .. })), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back").len(), 100);
    // The sink is usable again afterwards.
    within("a good send", sink.send(Bytes::from_static(b"ok"))).await?;
    Ok(())
}

#[tokio::test]
async fn sender_as_a_tower_service() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;

    client.sender().oneshot(Bytes::from_static(b"oneshot")).await?;
    let mut service = client.sender();
    for i in 0..50 {
        service.ready().await?.call(numbered(i)).await?;
    }
    // Calls may overlap; each completes once its message is queued.
    let calls: Vec<_> = (50..100).map(|i| service.call(numbered(i))).collect();
    for result in futures::future::join_all(calls).await {
        result?;
    }

    assert_eq!(recv(&server).await, "oneshot");
    for i in 0..50 {
        assert_eq!(recv(&server).await, numbered(i));
    }
    // The overlapping calls were started in order and take turns in order.
    for i in 50..100 {
        assert_eq!(recv(&server).await, numbered(i));
    }
    Ok(())
}

#[tokio::test]
async fn sender_as_a_service_behind_tower_middleware() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;
    let mut service = tower::ServiceBuilder::new()
        .concurrency_limit(1)
        .timeout(Duration::from_secs(5))
        .map_request(|text: &'static str| Bytes::from_static(text.as_bytes()))
        .service(client.sender());
    service.ready().await.expect("ready").call("through middleware").await.expect("sent");
    assert_eq!(recv(&server).await, "through middleware");
    Ok(())
}

#[tokio::test]
async fn a_concurrency_limit_layer_still_delivers() -> Result<(), Error> {
    let client = Socket::builder().layer(ConcurrencyLimitLayer::new(1)).build()?;
    let server = connect(&client).await?;
    // From several tasks at once: the limit serialises them, nothing is lost.
    let mut tasks = Vec::new();
    for task in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                client.send(format!("task {task} message {i}")).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        within("a sending task", task).await.expect("task")?;
    }
    let mut per_task = vec![Vec::new(); 4];
    for _ in 0..200 {
        let message = String::from_utf8(recv(&server).await.to_vec()).expect("utf-8");
        let mut words = message.split(' ');
        let task: usize = words.nth(1).and_then(|n| n.parse().ok()).expect("task number");
        let i: usize = words.nth(1).and_then(|n| n.parse().ok()).expect("message number");
        per_task[task].push(i);
    }
    for (task, got) in per_task.iter().enumerate() {
        assert_eq!(got, &(0..50).collect::<Vec<_>>(), "task {task}'s messages, in order");
    }
    Ok(())
}

#[tokio::test]
async fn a_timeout_and_limit_stack_still_delivers_and_keeps_send_errors() -> Result<(), Error> {
    let client = Socket::builder()
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .max_frame_length(1024)
        .build()?;
    let server = connect(&client).await?;
    for i in 0..100 {
        client.send(numbered(i)).await?;
    }
    for i in 0..100 {
        assert_eq!(recv(&server).await, numbered(i));
    }
    client.send_to(server.identity(), "by identity").await?;
    assert_eq!(recv(&server).await, "by identity");

    // Errors from below the layers are still `ErrorKind::Send`, message inside.
    let stranger = PeerId::random();
    let error = within("unknown peer", client.send_to(stranger, "lost?")).await.expect_err("unknown peer");
    assert!(error.send_kind() == Some(&SendErrorKind::UnknownPeer(stranger)), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back"), "lost?");
    let error = within("too large", client.send(vec![0u8; 2048])).await.expect_err("too large");
    assert!(matches!(error.send_kind(), Some(SendErrorKind::TooLarge { .. })), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back").len(), 2048);

    // And after close, closed.
    client.close().await;
    let error = within("closed", client.send("late")).await.expect_err("closed");
    assert!(error.is_closed(), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back"), "late");
    Ok(())
}

/// A layer that refuses messages whose payload is `"forbidden"`, with its
/// own error, and passes everything else (and every error from below) on.
#[derive(Clone)]
struct RefuseForbidden<S>(S);

#[derive(Debug)]
struct Forbidden;

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("forbidden payload")
    }
}

impl std::error::Error for Forbidden {}

impl<S> Service<Message> for RefuseForbidden<S>
where
    S: Service<Message, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        if message.payload() == "forbidden" {
            return Box::pin(futures::future::ready(Err(Forbidden.into())));
        }
        Box::pin(self.0.call(message))
    }
}

#[tokio::test]
async fn a_layers_own_error_is_of_kind_layer() -> Result<(), Error> {
    let client = Socket::builder().layer(tower::layer::layer_fn(RefuseForbidden)).build()?;
    let server = connect(&client).await?;
    let error = within("a refused send", client.send("forbidden")).await.expect_err("refused");
    match error.kind() {
        ErrorKind::Layer(inner) => assert!(inner.is::<Forbidden>(), "{inner:?}"),
        other => panic!("expected ErrorKind::Layer, got {other:?}"),
    }
    assert!(error.to_string().contains("forbidden payload"), "{error}");
    assert!(!error.is_closed());
    assert!(error.into_payload().is_none(), "a layer's own error cannot hand the message back");
    client.send("allowed").await?;
    assert_eq!(recv(&server).await, "allowed");
    Ok(())
}

#[tokio::test]
async fn send_timeout_bounds_a_send_waiting_for_room() -> Result<(), Error> {
    // tower's `Timeout` times only what follows readiness, and backpressure
    // is readiness: `send_timeout` is the bound for the wait for room.
    let client = Socket::builder()
        .buffer(1, 1 << 20)
        .when_buffer_full(WhenFull::Wait)
        .send_timeout(Duration::from_millis(200))
        .build()?;
    client.send("buffered").await?;
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), client.send("waits")).await;
    let error = outcome.expect("send_timeout ends the send").expect_err("timed out");
    assert!(started.elapsed() >= Duration::from_millis(200), "gave up early: {:?}", started.elapsed());
    assert!(error.send_kind() == Some(&SendErrorKind::TimedOut), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back"), "waits");
    // try_send never waits: the buffer is still full.
    let refused = client.try_send("again").await.expect_err("would wait");
    assert_eq!(refused.into_payload().expect("handed back"), "again");
    Ok(())
}

#[tokio::test]
async fn streams_of_messages_can_feed_the_sink() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;
    // An echo through sink and stream: server's messages() forwarded into
    // its own sender, back to the client.
    let echo = tokio::spawn({
        let server = server.clone();
        async move { server.messages().take(20).map(Ok).forward(server.sender()).await }
    });
    for i in 0..20 {
        client.send(numbered(i)).await?;
    }
    for i in 0..20 {
        assert_eq!(recv(&client).await, numbered(i));
    }
    within("the echo task", echo).await.expect("task")?;
    Ok(())
}
