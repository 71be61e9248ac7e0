//! Round-robin over real loopback TCP: strict cycling in connection order,
//! skipping a peer whose outbox is full, and readiness that waits only when
//! every outbox is full.

mod common;

use common::*;
use futures::FutureExt;
use smartsock_patterns::{Message, PeerSetConfig, RoundRobinLayer};
use smartsock_transport::TransportConfig;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cycle_over_peers_in_connection_order() {
    const PEERS: usize = 4;
    const SENT: u32 = 1000;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let mut service = RoundRobinLayer::new().layer(peers);

    let mut receivers = Vec::new();
    for position in 0..PEERS {
        let (parts, addr) = receiver().await;
        connect_in_order(&sender, addr, position, parts.transport.identity()).await;
        receivers.push(parts);
    }

    for i in 0..SENT {
        within("a send", async { service.ready().await?.call(Message::new(payload(i, 16))).await })
            .await
            .expect("send failed");
    }

    for (position, receiver) in receivers.iter().enumerate() {
        let got = collect(&receiver.inbound, SENT as usize / PEERS).await;
        assert!(got.iter().all(|m| m.peer == sender.identity()));
        let expected: Vec<u32> = (position as u32..SENT).step_by(PEERS).collect();
        assert_eq!(seqs(&got), expected, "peer {position} got the wrong messages");
    }
    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    for (position, receiver) in receivers.iter().enumerate() {
        assert_drained(&receiver.inbound, &format!("peer {position}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_peer_is_skipped_and_no_send_waits_while_another_has_room() {
    const CAPACITY: usize = 4;
    const SENT: u32 = 1000;
    const STALLED: usize = 2;
    let mut config = TransportConfig::default();
    config.outbox_capacity = CAPACITY;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let mut service = RoundRobinLayer::new().layer(peers);

    // Connection order: two receivers, a raw peer that never reads, one more receiver.
    let mut receivers = Vec::new();
    let mut live = Vec::new();
    for position in [0, 1] {
        let (parts, addr) = receiver().await;
        live.push(connect_in_order(&sender, addr, position, parts.transport.identity()).await);
        receivers.push(parts);
    }
    let (stalled, raw) = connect_raw(&sender, STALLED).await;
    let (parts, addr) = receiver().await;
    live.push(connect_in_order(&sender, addr, 3, parts.transport.identity()).await);
    receivers.push(parts);

    let mut raw_was_full = 0;
    for i in 0..SENT {
        // The live peers' writers drain their outboxes; make sure they have
        // before each send, so that only the stalled peer is ever skipped.
        for handle in &live {
            wait_for_room(handle).await;
        }
        raw_was_full += usize::from(stalled.room() == 0);
        let ready = service.ready().now_or_never().expect("not ready although peers have room");
        let ready = ready.expect("poll_ready failed");
        ready
            .call(Message::new(payload(i, 1024)))
            .now_or_never()
            .expect("a send waited although peers had room")
            .expect("send failed");
    }
    assert!(raw_was_full > 0, "the stalled peer's outbox never filled: the test proves nothing");

    // Let the stalled peer read now: closing flushes what is queued for it.
    let mut raw = RawReader::new(raw);
    let raw_task = tokio::spawn(async move { raw.read_to_end().await });
    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    let raw_got = within("the raw reader", raw_task).await.expect("raw reader panicked");

    let mut recipient = vec![None; SENT as usize];
    let mut got_by_position = Vec::new();
    for (index, receiver) in receivers.iter().enumerate() {
        let got: Vec<u32> =
            std::iter::from_fn(|| receiver.inbound.try_recv().ok()).map(|m| seq(&m.payload)).collect();
        let position = [0, 1, 3][index];
        got_by_position.push((position, got));
    }
    got_by_position.push((STALLED, raw_got.clone()));
    let mut total = 0;
    for (position, got) in &got_by_position {
        assert!(got.is_sorted_by(|a, b| a < b), "peer {position} got messages out of order: {got:?}");
        for &s in got {
            assert_eq!(recipient[s as usize], None, "message {s} delivered twice");
            recipient[s as usize] = Some(*position);
        }
        total += got.len();
    }
    assert_eq!(total, SENT as usize, "messages lost: {:?}", recipient.iter().position(Option::is_none));

    // Each message went to the next peer after the previous one's, except
    // that the stalled peer was passed over when full; never a live one.
    let recipient: Vec<usize> = recipient.into_iter().map(|r| r.expect("checked above")).collect();
    assert_eq!(recipient[0], 0);
    for (i, pair) in recipient.windows(2).enumerate() {
        let next = (pair[0] + 1) % 4;
        let skipped_stalled = next == STALLED && pair[1] == STALLED + 1;
        assert!(
            pair[1] == next || skipped_stalled,
            "message {} went to peer {} after message {i} went to peer {}",
            i + 1,
            pair[1],
            pair[0]
        );
    }
    assert!(
        raw_got.len() > CAPACITY && raw_got.len() < SENT as usize / 4,
        "the stalled peer took {} messages: its outbox never filled",
        raw_got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_only_when_every_outbox_is_full() {
    const CAPACITY: usize = 2;
    let mut config = TransportConfig::default();
    config.outbox_capacity = CAPACITY;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let mut service = RoundRobinLayer::new().layer(peers);
    let first = connect_gated(&sender, 0).await;
    let second = connect_gated(&sender, 1).await;

    let mut sent = 0;
    fill_until_stuck(&mut service, &[&first, &second], &[], &mut sent, 64).await;
    // Everything sent is in a blocked writer's hands or in a full outbox.
    let (first_held, second_held) = (first.gate.offered(), second.gate.offered());
    assert_eq!(sent as usize, first_held.len() + second_held.len() + 2 * CAPACITY);

    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending(), "ready with every outbox full");
    assert!(futures::poll!(&mut ready).is_pending(), "ready with every outbox full");

    // One peer reading again is enough.
    first.gate.open();
    let mut first_reader = RawReader::new(first.stream);
    let first_task = tokio::spawn(async move { first_reader.read_to_end().await });
    within("readiness after the first peer read", ready)
        .await
        .expect("poll_ready failed")
        .call(Message::new(payload(sent, 64)))
        .await
        .expect("send failed");
    sent += 1;

    // The second peer is still full and holds up nothing.
    for _ in 0..200 {
        service.ready().await.expect("poll_ready failed");
        within("a send while one peer is full", service.call(Message::new(payload(sent, 64))))
            .await
            .expect("send failed");
        sent += 1;
    }
    assert_eq!(second.handle.room(), 0);

    second.gate.open();
    let mut second_reader = RawReader::new(second.stream);
    let second_task = tokio::spawn(async move { second_reader.read_to_end().await });
    close_and_settle(&sender, &[]).await;
    let first_got = within("the first raw reader", first_task).await.expect("reader panicked");
    let second_got = within("the second raw reader", second_task).await.expect("reader panicked");
    assert!(first_got.starts_with(&first_held) && second_got.starts_with(&second_held));
    assert!(first_got.is_sorted_by(|a, b| a < b) && second_got.is_sorted_by(|a, b| a < b));
    let mut all: Vec<u32> = first_got.iter().chain(&second_got).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..sent).collect::<Vec<_>>(), "lost or duplicated messages");
}

/// When every outbox was full, readiness reserves a slot in the first one
/// that frees up. That reservation, and the waits on the other peers, must
/// not keep slots that a later send to one of those peers needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reservations_do_not_keep_outbox_slots() {
    let mut config = TransportConfig::default();
    config.outbox_capacity = 1;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let mut service = RoundRobinLayer::new().layer(peers);
    let first = connect_gated(&sender, 0).await;
    let second = connect_gated(&sender, 1).await;

    let mut sent = 0;
    fill_until_stuck(&mut service, &[&first, &second], &[], &mut sent, 64).await;
    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending(), "ready with every outbox full");

    first.gate.open();
    let mut first_reader = RawReader::new(first.stream);
    let first_task = tokio::spawn(async move { first_reader.read_to_end().await });
    within("readiness after the first peer read", ready)
        .await
        .expect("poll_ready failed")
        .call(Message::new(payload(sent, 64)))
        .await
        .expect("send failed");
    sent += 1;

    // The second peer drains too: its only slot must come free, and a send
    // addressed to it must go through.
    second.gate.open();
    let mut second_reader = RawReader::new(second.stream);
    let second_task = tokio::spawn(async move { second_reader.read_to_end().await });
    within("a send addressed to the second peer", async {
        service.ready().await?.call(Message::to_peer(second.handle.id(), payload(sent, 64))).await
    })
    .await
    .expect("send failed");
    sent += 1;
    within("a send addressed to the first peer", async {
        service.ready().await?.call(Message::to_peer(first.handle.id(), payload(sent, 64))).await
    })
    .await
    .expect("send failed");
    sent += 1;

    close_and_settle(&sender, &[]).await;
    let first_got = within("the first raw reader", first_task).await.expect("reader panicked");
    let second_got = within("the second raw reader", second_task).await.expect("reader panicked");
    assert_eq!(second_got.last(), Some(&(sent - 2)));
    assert_eq!(first_got.last(), Some(&(sent - 1)));
    let mut all: Vec<u32> = first_got.iter().chain(&second_got).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..sent).collect::<Vec<_>>(), "lost or duplicated messages");
}

/// A readiness that is given up on (a timeout around `ready()`, a `select!`
/// that took another branch) leaves the peer set's wake-up reservations
/// queued on every full outbox; they take slots as they free up and keep
/// them while that peer set is idle, so other senders to those peers wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_readiness_keeps_no_outbox_slots() {
    let mut config = TransportConfig::default();
    config.outbox_capacity = 1;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let mut idle = RoundRobinLayer::new().layer(peers.clone());
    let mut other = RoundRobinLayer::new().layer(peers);
    let first = connect_gated(&sender, 0).await;
    let second = connect_gated(&sender, 1).await;
    let mut sent = 0;
    fill_until_stuck(&mut idle, &[&first, &second], &[], &mut sent, 64).await;
    {
        // Given up on after one look, as a timeout around it would.
        let mut ready = idle.ready();
        assert!(futures::poll!(&mut ready).is_pending(), "ready with every outbox full");
    }

    first.gate.open();
    second.gate.open();
    let mut first_reader = RawReader::new(first.stream);
    let first_task = tokio::spawn(async move { first_reader.read_to_end().await });
    let mut second_reader = RawReader::new(second.stream);
    let second_task = tokio::spawn(async move { second_reader.read_to_end().await });
    within("a send from another clone", async {
        other.ready().await?.call(Message::to_peer(second.handle.id(), payload(sent, 64))).await
    })
    .await
    .expect("send failed");
    close_and_settle(&sender, &[]).await;
    within("the first reader", first_task).await.expect("reader panicked");
    let second_got = within("the second reader", second_task).await.expect("reader panicked");
    assert_eq!(second_got.last(), Some(&sent));
}
