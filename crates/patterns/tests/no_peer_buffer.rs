//! The no-peer buffer: messages sent before any peer is up are delivered in
//! order once one connects, and its high-water marks (messages and bytes)
//! hold at their exact boundaries under both policies.

mod common;

use bytes::Bytes;
use common::*;
use futures::FutureExt;
use smartsock_patterns::{
    Message, PeerSet, PeerSetConfig, PublishLayer, RoundRobinLayer, SendError, SendErrorKind, WhenFull,
};
use smartsock_transport::TransportConfig;
use tower::{Layer, Service, ServiceExt};

fn buffer_config(capacity: usize, bytes: usize, when_full: WhenFull) -> PeerSetConfig {
    let mut config = PeerSetConfig::default();
    config.buffer_capacity = capacity;
    config.buffer_bytes = bytes;
    config.buffer_when_full = when_full;
    config
}

/// Sends through `service` when ready at once, and expects the send to be
/// accepted at once.
fn send_now<S>(service: &mut S, message: Message)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let ready = service.ready().now_or_never().expect("not ready");
    ready
        .expect("poll_ready failed")
        .call(message)
        .now_or_never()
        .expect("the send waited")
        .expect("the send failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_any_peer_are_delivered_in_order() {
    const EARLY: u32 = 300;
    const LATE: u32 = 300;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let watcher = peers.clone();
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..EARLY {
        send_now(&mut service, Message::new(payload(i, 100)));
    }
    assert_eq!(watcher.buffered(), EARLY as usize);

    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    // Sends made while the buffer flushes queue behind it.
    for i in EARLY..EARLY + LATE {
        within("a send", async { service.ready().await?.call(Message::new(payload(i, 100))).await })
            .await
            .expect("send failed");
    }
    within("the buffer to flush", watcher.flushed()).await;
    assert_eq!(watcher.buffered(), 0);
    let got = collect(&receiver.inbound, (EARLY + LATE) as usize).await;
    assert_eq!(seqs(&got), (0..EARLY + LATE).collect::<Vec<_>>());
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_sent_before_any_peer_are_delivered_in_order() {
    const EARLY: u32 = 200;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let watcher = peers.clone();
    let mut service = PublishLayer::new().layer(peers);
    for i in 0..EARLY {
        send_now(&mut service, Message::new(payload(i, 100)));
    }
    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    within("the buffer to flush", watcher.flushed()).await;
    let got = collect(&receiver.inbound, EARLY as usize).await;
    assert_eq!(seqs(&got), (0..EARLY).collect::<Vec<_>>());
    assert_eq!(watcher.stats().slow_subscriber_drops(), 0);
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

/// The buffer is flushed at the pace the peer takes it: a buffer larger than
/// an outbox must not overflow it and drop what the peer was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_larger_than_an_outbox_is_flushed_without_loss() {
    const EARLY: u32 = 500;
    for publish in [false, true] {
        let mut config = TransportConfig::default();
        config.outbox_capacity = 4;
        let (sender, peers) = sender(config, PeerSetConfig::default());
        let watcher = peers.clone();
        let mut service: Box<dyn Service<Message, Response = (), Error = SendError, Future = _> + Send> =
            if publish {
                Box::new(PublishLayer::new().layer(peers))
            } else {
                Box::new(RoundRobinLayer::new().layer(peers))
            };
        for i in 0..EARLY {
            send_now(&mut service, Message::new(payload(i, 1000)));
        }
        let (receiver, addr) = receiver().await;
        sender.connect(&addr.to_string()).expect("connect");
        within("the buffer to flush", watcher.flushed()).await;
        close_and_settle(&sender, &[&receiver.transport]).await;
        let got: Vec<u32> =
            std::iter::from_fn(|| receiver.inbound.try_recv().ok()).map(|m| seq(&m.payload)).collect();
        let mode = if publish { "publish" } else { "round-robin" };
        assert_eq!(watcher.stats().slow_subscriber_drops(), 0, "{mode}: buffered messages dropped");
        assert_eq!(got, (0..EARLY).collect::<Vec<_>>(), "{mode}");
    }
}

/// A peer that stops reading while the buffer flushes into it must not hold
/// the rest of the buffer back from a peer that has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_does_not_hold_the_buffer_back_from_another() {
    const EARLY: u32 = 100;
    const CAPACITY: usize = 2;
    for publish in [false, true] {
        let mode = if publish { "publish" } else { "round-robin" };
        let mut config = TransportConfig::default();
        config.outbox_capacity = CAPACITY;
        let (sender, peers) = sender(config, PeerSetConfig::default());
        let watcher = peers.clone();
        let mut service: Box<dyn Service<Message, Response = (), Error = SendError, Future = _> + Send> =
            if publish {
                Box::new(PublishLayer::new().layer(peers))
            } else {
                Box::new(RoundRobinLayer::new().layer(peers))
            };
        for i in 0..EARLY {
            send_now(&mut service, Message::new(payload(i, 64)));
        }
        let stalled = connect_gated(&sender, 0).await;
        within("the stalled peer to fill", async {
            while !stalled.is_stuck() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
        let held = stalled.gate.offered();
        let taken = held.len() + CAPACITY;

        let (receiver, addr) = receiver().await;
        connect_in_order(&sender, addr, 1, receiver.transport.identity()).await;
        let got = seqs(&collect(&receiver.inbound, EARLY as usize - taken).await);
        assert_eq!(got, (taken as u32..EARLY).collect::<Vec<_>>(), "{mode}");
        within("the buffer to flush", watcher.flushed()).await;

        // And new sends flow again.
        send_now(&mut service, Message::new(payload(EARLY, 64)));
        assert_eq!(seqs(&collect(&receiver.inbound, 1).await), [EARLY], "{mode}");
        stalled.gate.open();
        let mut reader = RawReader::new(stalled.stream);
        let reader_task = tokio::spawn(async move { reader.read_to_end().await });
        close_and_settle(&sender, &[&receiver.transport]).await;
        assert_drained(&receiver.inbound, mode);
        let stalled_got = within("the stalled peer", reader_task).await.expect("reader panicked");
        assert_eq!(stalled_got, (0..taken as u32).collect::<Vec<_>>(), "{mode}");
        // Publishing, it missed what was sent while it was full.
        let missed = if publish { u64::from(EARLY) + 1 - taken as u64 } else { 0 };
        assert_eq!(watcher.stats().slow_subscriber_drops_for(stalled.handle.id()), missed, "{mode}");
    }
}

/// Fails the send with `BufferFull`, handing the message back.
fn assert_buffer_full<S>(service: &mut S, message: Message)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let ready = service.ready().now_or_never().expect("the drop policy must not wait");
    let expected = message.clone();
    let error = ready
        .expect("poll_ready failed")
        .call(message)
        .now_or_never()
        .expect("the drop policy must not wait")
        .expect_err("accepted past the high-water mark");
    assert_eq!(error.kind(), &SendErrorKind::BufferFull);
    // The routing layer has resolved its destination; what goes is unchanged.
    let back = error.into_message();
    assert_eq!(back.frame, expected.frame);
    assert_eq!(back.into_payload(), expected.into_payload());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_mark_with_the_drop_policy_refuses_the_next_one() {
    const MARK: u32 = 16;
    let (sender, peers) =
        sender(TransportConfig::default(), buffer_config(MARK as usize, usize::MAX, WhenFull::Drop));
    let watcher = peers.clone();
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..MARK {
        send_now(&mut service, Message::new(payload(i, 10)));
    }
    assert_eq!(watcher.buffered(), MARK as usize);
    assert_buffer_full(&mut service, Message::new(payload(MARK, 10)));
    assert_buffer_full(&mut service, Message::new(payload(MARK + 1, 10)));
    assert_eq!(watcher.buffered(), MARK as usize);

    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    within("the buffer to flush", watcher.flushed()).await;
    send_now(&mut service, Message::new(payload(MARK + 2, 10)));
    let got = collect(&receiver.inbound, MARK as usize + 1).await;
    let mut expected: Vec<u32> = (0..MARK).collect();
    expected.push(MARK + 2);
    assert_eq!(seqs(&got), expected);
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_mark_with_the_wait_policy_holds_readiness_until_a_peer_comes() {
    const MARK: u32 = 16;
    let (sender, peers) =
        sender(TransportConfig::default(), buffer_config(MARK as usize, usize::MAX, WhenFull::Wait));
    let watcher = peers.clone();
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..MARK {
        send_now(&mut service, Message::new(payload(i, 10)));
    }
    assert_eq!(watcher.buffered(), MARK as usize);

    {
        let mut ready = service.ready();
        assert!(futures::poll!(&mut ready).is_pending(), "ready with the buffer at its mark");
        assert!(futures::poll!(&mut ready).is_pending(), "ready with the buffer at its mark");

        let (receiver, addr) = receiver().await;
        sender.connect(&addr.to_string()).expect("connect");
        within("readiness once a peer is up", ready)
            .await
            .expect("poll_ready failed")
            .call(Message::new(payload(MARK, 10)))
            .await
            .expect("send failed");
        let got = collect(&receiver.inbound, MARK as usize + 1).await;
        assert_eq!(seqs(&got), (0..=MARK).collect::<Vec<_>>());
        close_and_settle(&sender, &[&receiver.transport]).await;
        assert_drained(&receiver.inbound, "the receiver");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_without_readiness_at_the_mark_waits_in_its_future() {
    const MARK: u32 = 4;
    let (sender, peers) =
        sender(TransportConfig::default(), buffer_config(MARK as usize, usize::MAX, WhenFull::Wait));
    let watcher = peers.clone();
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..MARK {
        send_now(&mut service, Message::new(payload(i, 10)));
    }
    // Against the tower contract, but it must still respect the mark.
    let mut waiting = service.call(Message::new(payload(MARK, 10)));
    assert!(futures::poll!(&mut waiting).is_pending(), "accepted past the mark");
    assert_eq!(watcher.buffered(), MARK as usize);

    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    within("the waiting send", waiting).await.expect("send failed");
    let got = collect(&receiver.inbound, MARK as usize + 1).await;
    assert_eq!(seqs(&got), (0..=MARK).collect::<Vec<_>>());
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_mark_takes_messages_while_below_it() {
    // 250-byte messages against a 1000-byte mark: the fourth brings the
    // buffer to the mark exactly, and the fifth is refused.
    let (sender, peers) = sender(TransportConfig::default(), buffer_config(1000, 1000, WhenFull::Drop));
    let watcher = peers.clone();
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..4 {
        send_now(&mut service, Message::new(payload(i, 250)));
    }
    assert_buffer_full(&mut service, Message::new(payload(4, 250)));
    assert_buffer_full(&mut service, Message::new(Bytes::from_static(b"\0\0\0\x05")));
    assert_eq!(watcher.buffered(), 4);

    // 300-byte messages: 900 bytes is below the mark, so a fourth is taken
    // and passes it; none after.
    let (_other, more) = sender_pair(buffer_config(1000, 1000, WhenFull::Drop));
    let mut more = RoundRobinLayer::new().layer(more);
    for i in 0..4 {
        send_now(&mut more, Message::new(payload(i, 300)));
    }
    assert_buffer_full(&mut more, Message::new(payload(4, 1)));

    // Empty messages count against the message mark only.
    let (_third, empty) = sender_pair(buffer_config(3, 1, WhenFull::Drop));
    let mut empty = RoundRobinLayer::new().layer(empty);
    for _ in 0..3 {
        send_now(&mut empty, Message::new(Bytes::new()));
    }
    assert_buffer_full(&mut empty, Message::new(Bytes::new()));

    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    let got = collect(&receiver.inbound, 4).await;
    assert_eq!(seqs(&got), [0, 1, 2, 3]);
    assert!(got.iter().all(|m| m.payload.len() == 250));
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_mark_with_the_wait_policy_holds_readiness() {
    let (sender, peers) = sender(TransportConfig::default(), buffer_config(1000, 1000, WhenFull::Wait));
    let mut service = RoundRobinLayer::new().layer(peers);
    for i in 0..2 {
        send_now(&mut service, Message::new(payload(i, 600)));
    }
    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending(), "ready with the buffer past its byte mark");
    let (receiver, addr) = receiver().await;
    sender.connect(&addr.to_string()).expect("connect");
    within("readiness once a peer is up", ready)
        .await
        .expect("poll_ready failed")
        .call(Message::new(payload(2, 600)))
        .await
        .expect("send failed");
    let got = collect(&receiver.inbound, 3).await;
    assert_eq!(seqs(&got), [0, 1, 2]);
    close_and_settle(&sender, &[&receiver.transport]).await;
    assert_drained(&receiver.inbound, "the receiver");
}

/// A sender transport and peer set that never connect anywhere.
fn sender_pair(config: PeerSetConfig) -> (smartsock_transport::Transport, PeerSet) {
    sender(TransportConfig::default(), config)
}
