//! Errors the caller can cause: refused configurations, oversized messages,
//! unknown identities, bad addresses and ports in use. Each fails at once,
//! and a failed send hands the message back.

mod common;

use std::time::Duration;

use common::{pair, recv, within};
use futures::StreamExt;
use smartsock::patterns::SendErrorKind;
use smartsock::transport::TransportError;
use smartsock::{Delivery, Error, ErrorKind, PeerId, SendMode, Socket, Undelivered};

/// "At once": far shorter than any wait for a peer or a resend.
const AT_ONCE: Duration = Duration::from_secs(1);

async fn at_once<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(AT_ONCE, future).await.expect("fails at once, without waiting")
}

fn send_kind(error: &Error) -> &SendErrorKind {
    error.send_kind().unwrap_or_else(|| panic!("expected a send error, got {error:?}"))
}

/// Every send returns a `Result<(), Error>` that its caller copies: the
/// error stays one pointer wide, so that `Result` is too.
#[test]
fn an_error_is_one_pointer_wide() {
    assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    assert_eq!(std::mem::size_of::<Result<(), Error>>(), std::mem::size_of::<usize>());
}

#[tokio::test]
async fn a_send_error_taken_apart_hands_back_the_message_and_shows_as_its_kind() {
    let socket = Socket::builder().max_frame_length(16).build().expect("builds");
    let error = at_once(socket.send(vec![7; 64])).await.expect_err("too large");
    // Display, Debug and source are the kind's.
    assert_eq!(error.to_string(), error.kind().to_string());
    assert_eq!(format!("{error:?}"), format!("{:?}", error.kind()));
    let source = std::error::Error::source(&error).expect("a source");
    assert!(source.is::<smartsock::patterns::SendError>(), "{source:?}");
    assert!(matches!(send_kind(&error), SendErrorKind::TooLarge { .. }), "{error:?}");
    assert!(!error.is_closed());
    let not_a_send = Socket::new().expect("builds").connect("no address").expect_err("bad address");
    assert_eq!(not_a_send.send_kind(), None, "{not_a_send:?}");
    let ErrorKind::Send(send) = error.into_kind() else { panic!("a send error") };
    assert_eq!(send.into_message().into_payload(), vec![7; 64]);

    // After close, a send and a bind are both refused as closed.
    socket.close().await;
    assert!(at_once(socket.send("late")).await.expect_err("closed").is_closed());
    let error = at_once(socket.bind("127.0.0.1:0")).await.expect_err("closed");
    assert!(error.is_closed(), "{error:?}");
}

#[tokio::test]
async fn publish_with_at_least_once_is_refused_by_build() {
    let error = Socket::builder()
        .send_mode(SendMode::Publish)
        .delivery(Delivery::AtLeastOnce)
        .build()
        .expect_err("refused");
    assert!(matches!(error.kind(), ErrorKind::Config(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("publish") && text.contains("at-least-once"), "a clear message: {text}");
    // The other three combinations build.
    for (mode, delivery) in [
        (SendMode::RoundRobin, Delivery::AtMostOnce),
        (SendMode::RoundRobin, Delivery::AtLeastOnce),
        (SendMode::Publish, Delivery::AtMostOnce),
    ] {
        Socket::builder().send_mode(mode).delivery(delivery).build().expect("a usable combination");
    }
}

#[tokio::test]
async fn a_message_over_the_frame_limit_fails_at_once_and_comes_back() -> Result<(), Error> {
    const MAX: usize = 1024;
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::builder().max_frame_length(MAX).build()?;

    // With no peer: refused, not buffered.
    let too_big = vec![7u8; MAX];
    let error = at_once(client.send(too_big.clone())).await.expect_err("too large");
    assert_eq!(send_kind(&error), &SendErrorKind::TooLarge { len: MAX + 1, max: MAX });
    assert!(!error.is_closed());
    assert_eq!(error.into_payload().expect("handed back"), too_big);

    // With a peer: the same; the largest that fits (DATA: 1 type byte +
    // payload) goes through.
    client.connect(&addr.to_string())?;
    within("the peer", client.wait_for_peers(1)).await;
    let error = at_once(client.send(too_big.clone())).await.expect_err("too large");
    assert_eq!(error.into_payload().expect("handed back"), too_big);
    let error = at_once(client.send_to(server.identity(), too_big.clone())).await.expect_err("too large");
    assert_eq!(error.into_payload().expect("handed back"), too_big);
    let fits = vec![8u8; MAX - 1];
    client.send(fits.clone()).await?;
    assert_eq!(recv(&server).await, fits);
    Ok(())
}

#[tokio::test]
async fn the_frame_limit_counts_the_at_least_once_header() -> Result<(), Error> {
    const MAX: usize = 1024;
    let (server, plain_client) = pair().await;
    drop(plain_client);
    let addr = server.local_addrs()[0];
    let client = Socket::builder()
        .max_frame_length(MAX)
        .delivery(Delivery::AtLeastOnce)
        .linger(Duration::from_secs(5))
        .build()?;
    client.connect(&addr.to_string())?;
    within("the peer", client.wait_for_peers(1)).await;

    // DATA_REQ: 1 type byte + 16 id bytes + payload.
    let too_big = vec![1u8; MAX - 16];
    let error = at_once(client.send(too_big.clone())).await.expect_err("too large");
    assert_eq!(send_kind(&error), &SendErrorKind::TooLarge { len: MAX + 1, max: MAX });
    assert_eq!(error.into_payload().expect("handed back"), too_big);
    let fits = vec![2u8; MAX - 17];
    client.send(fits.clone()).await?;
    assert_eq!(recv(&server).await, fits);

    // The refused message is not tracked: the sender settles and gives nothing up.
    within("close", client.close()).await;
    let given_up: Vec<Undelivered> = within("undelivered", client.undelivered().collect()).await;
    assert!(given_up.is_empty(), "{given_up:?}");
    Ok(())
}

#[tokio::test]
async fn send_to_an_unknown_identity_fails_at_once_and_hands_the_message_back() -> Result<(), Error> {
    let stranger = PeerId::random();
    for mode in [SendMode::RoundRobin, SendMode::Publish] {
        let lonely = Socket::builder().send_mode(mode).build()?;
        // With nobody connected...
        let error = at_once(lonely.send_to(stranger, "hello?")).await.expect_err("unknown peer");
        assert_eq!(send_kind(&error), &SendErrorKind::UnknownPeer(stranger));
        assert_eq!(error.into_payload().expect("handed back"), "hello?");
    }
    // ...and with someone else connected.
    let (server, client) = pair().await;
    let error = at_once(server.send_to(stranger, "not for you")).await.expect_err("unknown peer");
    assert_eq!(send_kind(&error), &SendErrorKind::UnknownPeer(stranger));
    assert_eq!(error.into_payload().expect("handed back"), "not for you");
    // The connected peer got nothing of it.
    server.send_to(client.identity(), "for you").await?;
    assert_eq!(recv(&client).await, "for you");

    // Under at-least-once as well.
    let reliable = Socket::builder().delivery(Delivery::AtLeastOnce).build()?;
    let error = at_once(reliable.send_to(stranger, "anyone?")).await.expect_err("unknown peer");
    assert_eq!(send_kind(&error), &SendErrorKind::UnknownPeer(stranger));
    assert_eq!(error.into_payload().expect("handed back"), "anyone?");
    Ok(())
}

#[tokio::test]
async fn bad_addresses_are_transport_errors_at_once() -> Result<(), Error> {
    let socket = Socket::new()?;
    for bad in ["", "localhost", "127.0.0.1", ":80", "127.0.0.1:http", "127.0.0.1:70000", "::1:80"] {
        let error = at_once(socket.bind(bad)).await.expect_err(bad);
        assert!(
            matches!(error.kind(), ErrorKind::Transport(TransportError::BadAddress { .. })),
            "bind {bad:?}: {error:?}"
        );
        let error = socket.connect(bad).expect_err(bad);
        assert!(
            matches!(error.kind(), ErrorKind::Transport(TransportError::BadAddress { .. })),
            "connect {bad:?}: {error:?}"
        );
        assert!(!error.is_closed());
        assert!(error.into_payload().is_none());
    }
    // A well-formed address that is not local cannot be bound.
    let error = at_once(socket.bind("192.0.2.1:0")).await.expect_err("not a local address");
    assert!(matches!(error.kind(), ErrorKind::Transport(TransportError::Bind { .. })), "{error:?}");
    // The socket is still usable.
    socket.bind("127.0.0.1:0").await?;
    Ok(())
}

#[tokio::test]
async fn binding_a_port_in_use_fails() -> Result<(), Error> {
    let first = Socket::new()?;
    let addr = first.bind("127.0.0.1:0").await?.to_string();
    let second = Socket::new()?;
    let error = at_once(second.bind(&addr)).await.expect_err("port in use");
    assert!(matches!(error.kind(), ErrorKind::Transport(TransportError::Bind { .. })), "{error:?}");
    assert!(error.to_string().contains(&addr), "the message names the address: {error}");
    // The same socket twice on one port, too.
    let error = at_once(first.bind(&addr)).await.expect_err("port in use");
    assert!(matches!(error.kind(), ErrorKind::Transport(TransportError::Bind { .. })), "{error:?}");

    // And a port held by someone else entirely.
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").expect("std listener");
    let taken = foreign.local_addr().expect("addr").to_string();
    let error = at_once(second.bind(&taken)).await.expect_err("port in use");
    assert!(matches!(error.kind(), ErrorKind::Transport(TransportError::Bind { .. })), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn settings_out_of_range_are_refused_by_build() {
    let cases: Vec<(&str, Result<Socket, Error>)> = vec![
        ("empty no-peer buffer", Socket::builder().buffer(0, 1024).build()),
        (
            "zero resend timeout",
            Socket::builder().delivery(Delivery::AtLeastOnce).resend_timeout(Duration::ZERO).build(),
        ),
        ("zero peer queue", Socket::builder().peer_queue(0).build()),
        ("zero peer queue bytes", Socket::builder().peer_queue_bytes(0).build()),
        ("zero receive queue", Socket::builder().receive_queue(0).build()),
        (
            "heartbeat timeout not above the interval",
            Socket::builder().heartbeat(Duration::from_secs(2), Duration::from_secs(1)).build(),
        ),
        (
            "zero send attempts",
            Socket::builder().delivery(Delivery::AtLeastOnce).give_up(0, Duration::from_secs(1)).build(),
        ),
        (
            "a duplicate window one past its bound",
            Socket::builder().duplicate_window(smartsock::reliability::MAX_DUPLICATE_WINDOW + 1).build(),
        ),
        ("a duplicate window of usize::MAX", Socket::builder().duplicate_window(usize::MAX).build()),
    ];
    for (what, result) in cases {
        let error = result.expect_err(what);
        assert!(
            matches!(
                error.kind(),
                ErrorKind::Config(_) | ErrorKind::Transport(TransportError::InvalidConfig(_))
            ),
            "{what}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_duplicate_window_at_its_bound_is_accepted() {
    let socket = Socket::builder()
        .duplicate_window(smartsock::reliability::MAX_DUPLICATE_WINDOW)
        .build()
        .expect("the bound itself is a valid window");
    socket.close().await;
}
