//! Publish over real loopback TCP: every subscriber gets every message in
//! order, a stalled subscriber neither slows the others nor goes uncounted,
//! and the send waits only when no subscriber at all has room.

mod common;

use common::*;
use futures::FutureExt;
use smartsock_patterns::{Message, PeerSetConfig, PublishLayer, WhenFull};
use smartsock_transport::EventsError as TryRecvError;
use smartsock_transport::{DropReason, Event, TransportConfig};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_message_in_order() {
    const PEERS: usize = 10;
    const SENT: u32 = 500;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let stats_source = peers.clone();
    let mut service = PublishLayer::new().layer(peers);
    let mut receivers = Vec::new();
    for position in 0..PEERS {
        let (parts, addr) = receiver().await;
        connect_in_order(&sender, addr, position, parts.transport.identity()).await;
        receivers.push(parts);
    }

    for i in 0..SENT {
        within("a send", async { service.ready().await?.call(Message::new(payload(i, 100))).await })
            .await
            .expect("send failed");
    }
    for (position, receiver) in receivers.iter().enumerate() {
        let got = collect(&receiver.inbound, SENT as usize).await;
        assert_eq!(seqs(&got), (0..SENT).collect::<Vec<_>>(), "subscriber {position}");
    }
    assert_eq!(stats_source.stats().slow_subscriber_drops(), 0);
    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    for (position, receiver) in receivers.iter().enumerate() {
        assert_drained(&receiver.inbound, &format!("subscriber {position}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_slow_the_others_and_its_drops_are_counted() {
    const CAPACITY: usize = 8;
    const SENT: u32 = 600;
    const STALLED: usize = 4;
    let mut config = TransportConfig::default();
    config.outbox_capacity = CAPACITY;
    config.event_capacity = 4 * SENT as usize;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let stats_source = peers.clone();
    let mut service = PublishLayer::new().layer(peers);

    let mut receivers = Vec::new();
    let mut live = Vec::new();
    let mut raw = None;
    for position in 0..10 {
        if position == STALLED {
            raw = Some(connect_raw(&sender, position).await);
            continue;
        }
        let (parts, addr) = receiver().await;
        live.push(connect_in_order(&sender, addr, position, parts.transport.identity()).await);
        receivers.push(parts);
    }
    let (stalled, raw) = raw.expect("connected above");
    let mut events = sender.events();

    for i in 0..SENT {
        // Under the drop policy any full outbox loses its copy; keep the
        // live ones from filling so that only the stalled one can.
        for handle in &live {
            wait_for_room(handle).await;
        }
        let ready = service.ready().now_or_never().expect("the stalled subscriber held the send up");
        ready
            .expect("poll_ready failed")
            .call(Message::new(payload(i, 1024)))
            .now_or_never()
            .expect("the stalled subscriber held the send up")
            .expect("send failed");
    }

    for (index, receiver) in receivers.iter().enumerate() {
        let got = collect(&receiver.inbound, SENT as usize).await;
        assert_eq!(seqs(&got), (0..SENT).collect::<Vec<_>>(), "live subscriber {index}");
    }

    let stats = stats_source.stats();
    let drops = stats.slow_subscriber_drops_for(stalled.id());
    assert_eq!(stats.slow_subscriber_drops(), drops, "a live subscriber lost messages");
    for handle in &live {
        assert_eq!(stats.slow_subscriber_drops_for(handle.id()), 0);
    }
    let accepted = SENT as u64 - drops;
    // At least a full outbox, and the frames its writer had taken before it blocked.
    assert!(accepted > CAPACITY as u64, "accepted {accepted}: the outbox never filled");
    assert!(drops > 0, "nothing dropped: the subscriber never stalled");

    // Every Dropped event is for the stalled subscriber; together they count every drop.
    let mut reported = 0;
    loop {
        match events.try_recv() {
            Ok(Event::Dropped { peer, count, reason }) => {
                assert_eq!(reason, DropReason::SlowSubscriber);
                assert_eq!(peer, Some(stalled.id()));
                reported += count;
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("events: {e}"),
        }
    }
    assert_eq!(reported, drops, "Dropped events disagree with the stats");

    // The stalled subscriber, reading at last, gets exactly what was accepted, in order.
    let mut reader = RawReader::new(raw);
    let reader_task = tokio::spawn(async move { reader.read_to_end().await });
    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    let got = within("the stalled subscriber", reader_task).await.expect("reader panicked");
    assert_eq!(got.len() as u64, accepted, "the stalled subscriber got {} of {accepted} accepted", got.len());
    assert!(got.is_sorted_by(|a, b| a < b), "out of order: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_full_subscriber_makes_the_send_wait_instead_of_dropping() {
    const CAPACITY: usize = 4;
    let mut config = TransportConfig::default();
    config.outbox_capacity = CAPACITY;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let stats_source = peers.clone();
    let mut service = PublishLayer::new().layer(peers);
    let subscriber = connect_gated(&sender, 0).await;

    let mut sent = 0;
    fill_until_stuck(&mut service, &[&subscriber], &[], &mut sent, 64).await;
    let held = subscriber.gate.offered();
    assert_eq!(sent as usize, held.len() + CAPACITY);
    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending(), "ready with the only outbox full");

    subscriber.gate.open();
    let mut reader = RawReader::new(subscriber.stream);
    let reader_task = tokio::spawn(async move { reader.read_to_end().await });
    within("readiness once the subscriber reads", ready)
        .await
        .expect("poll_ready failed")
        .call(Message::new(payload(sent, 64)))
        .await
        .expect("send failed");
    sent += 1;
    for _ in 0..100 {
        within("a send", async { service.ready().await?.call(Message::new(payload(sent, 64))).await })
            .await
            .expect("send failed");
        sent += 1;
    }

    close_and_settle(&sender, &[]).await;
    let got = within("the subscriber", reader_task).await.expect("reader panicked");
    assert_eq!(stats_source.stats().slow_subscriber_drops(), 0);
    assert_eq!(got, (0..sent).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_policy_waits_for_a_full_subscriber() {
    const CAPACITY: usize = 4;
    let mut config = TransportConfig::default();
    config.outbox_capacity = CAPACITY;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let stats_source = peers.clone();
    let mut service = PublishLayer::when_full(WhenFull::Wait).layer(peers);
    let (fast, addr) = receiver().await;
    connect_in_order(&sender, addr, 0, fast.transport.identity()).await;
    let slow = connect_gated(&sender, 1).await;

    // Send until one send has to wait for the slow subscriber.
    let mut sent = 0;
    let waiting = loop {
        assert!(sent < 10_000, "no send ever waited");
        service.ready().await.expect("poll_ready failed");
        let mut call = service.call(Message::new(payload(sent, 64)));
        sent += 1;
        if futures::poll!(&mut call).is_pending() {
            break call;
        }
    };
    slow.gate.open();
    let mut reader = RawReader::new(slow.stream);
    let reader_task = tokio::spawn(async move { reader.read_to_end().await });
    within("the waiting send", waiting).await.expect("send failed");

    let got = collect(&fast.inbound, sent as usize).await;
    assert_eq!(seqs(&got), (0..sent).collect::<Vec<_>>());
    close_and_settle(&sender, &[&fast.transport]).await;
    assert_drained(&fast.inbound, "the fast subscriber");
    let slow_got = within("the slow subscriber", reader_task).await.expect("reader panicked");
    assert_eq!(slow_got, (0..sent).collect::<Vec<_>>());
    assert_eq!(stats_source.stats().slow_subscriber_drops(), 0);
}

/// When every outbox was full, readiness reserves a slot in the first one
/// that frees up; the next published message must use it, not be dropped
/// for that subscriber as if it were still full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_slot_is_not_counted_as_a_full_subscriber() {
    let mut config = TransportConfig::default();
    config.outbox_capacity = 1;
    let (sender, peers) = sender(config, PeerSetConfig::default());
    let stats_source = peers.clone();
    let mut service = PublishLayer::new().layer(peers);
    let first = connect_gated(&sender, 0).await;
    let second = connect_gated(&sender, 1).await;

    let mut sent = 0;
    fill_until_stuck(&mut service, &[&first, &second], &[], &mut sent, 64).await;
    let drops_before = stats_source.stats().slow_subscriber_drops_for(first.handle.id());
    let mut ready = service.ready();
    assert!(futures::poll!(&mut ready).is_pending(), "ready with every outbox full");

    first.gate.open();
    let mut reader = RawReader::new(first.stream);
    let reader_task = tokio::spawn(async move { reader.read_to_end().await });
    within("readiness after the first subscriber read", ready)
        .await
        .expect("poll_ready failed")
        .call(Message::new(payload(sent, 64)))
        .await
        .expect("send failed");
    let last = sent;
    sent += 1;
    assert_eq!(
        stats_source.stats().slow_subscriber_drops_for(first.handle.id()),
        drops_before,
        "dropped for a subscriber that had room"
    );

    second.gate.open();
    let mut second_reader = RawReader::new(second.stream);
    let second_task = tokio::spawn(async move { second_reader.read_to_end().await });
    close_and_settle(&sender, &[]).await;
    let got = within("the first subscriber", reader_task).await.expect("reader panicked");
    assert_eq!(got.last(), Some(&last), "the message sent once ready never reached the first subscriber");
    let second_got = within("the second subscriber", second_task).await.expect("reader panicked");
    let stats = stats_source.stats();
    assert_eq!(got.len() as u64 + stats.slow_subscriber_drops_for(first.handle.id()), u64::from(sent));
    assert_eq!(
        second_got.len() as u64 + stats.slow_subscriber_drops_for(second.handle.id()),
        u64::from(sent)
    );
}
