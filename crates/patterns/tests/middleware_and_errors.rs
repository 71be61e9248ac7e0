//! Tower middleware stacked on a routing layer, and the errors a send can
//! end in: closed transport, oversized message. Every error hands the
//! message back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::FutureExt;
use smartsock_patterns::{
    Destination, Message, PeerSetConfig, PublishLayer, RoundRobin, RoundRobinLayer, SendError, SendErrorKind,
    WhenFull,
};
use smartsock_transport::{PeerId, TransportConfig};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_concurrency_limit_stack_on_round_robin() {
    const SENT: u32 = 400;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .concurrency_limit(8)
        .layer(RoundRobinLayer::new())
        .service(peers);
    let mut receivers = Vec::new();
    for position in 0..2 {
        let (parts, addr) = receiver().await;
        connect_in_order(&sender, addr, position, parts.transport.identity()).await;
        receivers.push(parts);
    }

    for i in 0..SENT {
        within("a send", async { service.ready().await?.call(Message::new(payload(i, 32))).await })
            .await
            .expect("send failed");
    }
    for (position, receiver) in receivers.iter().enumerate() {
        let got = collect(&receiver.inbound, SENT as usize / 2).await;
        assert_eq!(seqs(&got), (position as u32..SENT).step_by(2).collect::<Vec<_>>());
    }

    // Errors come through the stack boxed, still holding the message.
    let stranger = PeerId::random();
    let error: BoxError = within("a send to a stranger", async {
        service.ready().await?.call(Message::to_peer(stranger, "for nobody")).await
    })
    .await
    .expect_err("a send to a stranger succeeded");
    let error = error.downcast::<SendError>().expect("not a SendError");
    assert_eq!(error.kind(), &SendErrorKind::UnknownPeer(stranger));
    assert_eq!(error.into_message().into_payload(), "for nobody");

    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    for (position, receiver) in receivers.iter().enumerate() {
        assert_drained(&receiver.inbound, &format!("peer {position}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_middleware_ends_a_send_that_waits_too_long() {
    // No peer and a full buffer: a send made without readiness waits, and
    // the timeout layer gives up on it.
    let mut config = PeerSetConfig::default();
    config.buffer_capacity = 1;
    config.buffer_when_full = WhenFull::Wait;
    let (_sender, peers) = sender(TransportConfig::default(), config);
    let watcher = peers.clone();
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .layer(RoundRobinLayer::new())
        .service(peers);
    within("a send", async { service.ready().await?.call(Message::new("first")).await })
        .await
        .expect("send failed");
    let error = within("the timeout", service.call(Message::new("second"))).await.expect_err("not timed out");
    assert!(error.is::<tower::timeout::error::Elapsed>(), "unexpected error {error}");
    assert_eq!(watcher.buffered(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_after_the_transport_closes_fail_with_the_message_handed_back() {
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let (receiver, addr) = receiver().await;
    let id = receiver.transport.identity();
    connect_in_order(&sender, addr, 0, id).await;
    let mut round_robin = RoundRobinLayer::new().layer(peers.clone());
    let mut publish = PublishLayer::new().layer(peers);
    within("a send", async { round_robin.ready().await?.call(Message::new(payload(0, 8))).await })
        .await
        .expect("send failed");
    assert_eq!(seqs(&collect(&receiver.inbound, 1).await), [0]);

    within("the sender to close", sender.close()).await;
    for (message, body) in
        [(Message::new("unaddressed"), "unaddressed"), (Message::to_peer(id, "addressed"), "addressed")]
    {
        let expected = message.clone();
        let error = send_at_once(&mut round_robin, message).expect_err("sent after close");
        assert_eq!(error.kind(), &SendErrorKind::Closed);
        assert_eq!(error.message().frame, expected.frame);
        assert_eq!(error.into_message().into_payload(), body);

        let error = send_at_once(&mut publish, expected).expect_err("sent after close");
        assert_eq!(error.kind(), &SendErrorKind::Closed);
        assert_eq!(error.into_message().into_payload(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_releases_sends_waiting_for_buffer_room() {
    let mut config = PeerSetConfig::default();
    config.buffer_capacity = 2;
    config.buffer_when_full = WhenFull::Wait;
    let (sender, peers) = sender(TransportConfig::default(), config);
    let mut other = RoundRobinLayer::new().layer(peers.clone());
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..2 {
        send_at_once(&mut service, Message::new(payload(i, 8))).expect("send failed");
    }
    // One send waits for readiness, another (made without it) in its future.
    let mut waiting = other.call(Message::new("waiting"));
    assert!(futures::poll!(&mut waiting).is_pending());
    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending());

    within("the sender to close", sender.close()).await;
    let error = within("the waiting send", waiting).await.expect_err("sent after close");
    assert_eq!(error.kind(), &SendErrorKind::Closed);
    assert_eq!(error.into_message().into_payload(), "waiting");
    let ready = within("readiness after close", ready).await.expect("poll_ready failed");
    let error = ready.call(Message::new("late")).await.expect_err("sent after close");
    assert_eq!(error.kind(), &SendErrorKind::Closed);
    assert_eq!(error.into_message().into_payload(), "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_maximum_frame_length_fails_with_too_large() {
    const MAX: usize = 1024;
    let mut config = TransportConfig::default();
    config.max_frame_length = MAX;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let mut service: RoundRobin<_> = RoundRobinLayer::new().layer(peers);

    // Refused before anything else: with no peer, it is not buffered.
    let too_big = Bytes::from(vec![7u8; MAX]);
    let error = send_at_once(&mut service, Message::new(too_big.clone())).expect_err("too large accepted");
    assert_eq!(error.kind(), &SendErrorKind::TooLarge { len: MAX + 1, max: MAX });
    assert_eq!(error.into_message().into_payload(), too_big);
    assert_eq!(service.get_ref().buffered(), 0);

    let (receiver, addr) = receiver().await;
    let id = receiver.transport.identity();
    connect_in_order(&sender, addr, 0, id).await;
    // An envelope of exactly the maximum (type byte + payload) goes.
    let largest = Bytes::from(vec![9u8; MAX - 1]);
    send_at_once(&mut service, Message::new(largest.clone())).expect("largest message refused");
    for message in [Message::new(too_big.clone()), Message::to_peer(id, too_big.clone())] {
        let to = message.to;
        let error = send_at_once(&mut service, message).expect_err("too large accepted");
        assert_eq!(error.kind(), &SendErrorKind::TooLarge { len: MAX + 1, max: MAX });
        let back = error.into_message();
        assert_eq!(back.to, if to == Destination::Unresolved { Destination::AnyOne } else { to });
        assert_eq!(back.into_payload(), too_big);
    }
    let got = collect(&receiver.inbound, 1).await;
    assert_eq!(got[0].payload, largest);
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

/// Sends through `service`, which must be ready at once, and returns the
/// outcome, which must be known at once.
fn send_at_once<S>(service: &mut S, message: Message) -> Result<(), SendError>
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let ready = service.ready().now_or_never().expect("not ready");
    ready.expect("poll_ready failed").call(message).now_or_never().expect("the send waited")
}
