//! The at-least-once sender against a peer played by the test, over an
//! in-memory stream with paused time: resends at exact times with the same
//! MsgId, forgetting on ACK, giving up after the attempts or the time run
//! out, what is kept of the given-up messages, the in-flight limit, unknown
//! ACKs, publish refused, and shutdown.

mod common;

use std::time::Duration;

use common::{MemPeer, Sender, WAIT, reliable, within};
use smartsock_patterns::{Destination, Message, SendErrorKind, WhenFull};
use smartsock_reliability::{AtLeastOnceConfig, TryRecvError};
use smartsock_transport::{DropReason, Event, Frame, MsgId, PeerId};
use tokio::time::Instant;

const RESEND: Duration = Duration::from_secs(5);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn a_message_swallowed_twice_is_delivered_by_the_third_send_and_then_forgotten() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("payload").await.expect("sent");
    assert_eq!(sender.handle.in_flight(), 1);

    // Swallowed: no ACK.
    let (first, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(start.elapsed(), secs(0));
    assert_eq!(payload, "payload");
    let (second, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!((second, &payload[..]), (first, &b"payload"[..]));
    // The third send is acknowledged.
    let (third, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(start.elapsed(), secs(10));
    assert_eq!((third, &payload[..]), (first, &b"payload"[..]));
    assert_eq!(sender.handle.in_flight(), 1);
    peer.ack(third).await;

    sender.settled().await;
    assert_eq!(start.elapsed(), secs(10), "the ACK settles the message at once");
    assert_eq!(sender.handle.in_flight(), 0);
    let stats = sender.handle.stats();
    assert_eq!((stats.sent(), stats.resent(), stats.acked(), stats.undelivered()), (1, 2, 1, 0));

    // Forgotten: no fourth send however long we wait, and nothing given up.
    assert_eq!(peer.next_frame(secs(120)).await, None);
    assert_eq!((stats.sent(), stats.resent(), stats.acked(), stats.undelivered()), (1, 2, 1, 0));
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test(start_paused = true)]
async fn each_message_gets_its_own_id_and_only_its_own_ack_settles_it() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("one").await.expect("sent");
    sender.send("two").await.expect("sent");
    let (one, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "one");
    let (two, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "two");
    assert_ne!(one, two);
    assert_eq!(sender.handle.in_flight(), 2);

    peer.ack(two).await;
    // Only "one" is resent, at 5 s, with its own id.
    let (again, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!((again, &payload[..], start.elapsed()), (one, &b"one"[..], secs(5)));
    assert_eq!(sender.handle.in_flight(), 1);
    assert_eq!(sender.handle.stats().acked(), 1);
    peer.ack(one).await;
    sender.settled().await;
    assert_eq!(peer.next_frame(secs(60)).await, None);
    assert_eq!(sender.handle.stats().resent(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_ack_for_an_unknown_id_changes_nothing() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("payload").await.expect("sent");
    let (id, _) = peer.expect_data_req(WAIT).await;
    let unknown = MsgId::from_bytes([0xab; 16]);
    assert_ne!(unknown, id);
    peer.ack(unknown).await;

    // Still pending: resent on time with the same id.
    let (again, _) = peer.expect_data_req(WAIT).await;
    assert_eq!((again, start.elapsed()), (id, secs(5)));
    assert_eq!(sender.handle.in_flight(), 1);
    assert_eq!(sender.handle.stats().acked(), 0);

    peer.ack(id).await;
    sender.settled().await;
    // A second ACK for it, now unknown too, is ignored as well.
    peer.ack(id).await;
    peer.ack(unknown).await;
    sender.send("next").await.expect("the sender still works");
    let (next, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "next");
    assert_ne!(next, id);
    peer.ack(next).await;
    sender.settled().await;
    let stats = sender.handle.stats();
    assert_eq!((stats.sent(), stats.acked(), stats.undelivered()), (2, 2, 0));
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test(start_paused = true)]
async fn a_message_never_acknowledged_is_handed_back_after_exactly_its_attempts() {
    let mut sender = Sender::new(reliable(RESEND, 3));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("lost").await.expect("sent");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (id, payload) = peer.expect_data_req(WAIT).await;
        assert_eq!(payload, "lost");
        seen.push((id, start.elapsed()));
    }
    let id = seen[0].0;
    assert_eq!(seen, [(id, secs(0)), (id, secs(5)), (id, secs(10))]);

    // The last attempt gets its full resend timeout, then it is given up.
    let undelivered = within("the give-up", WAIT, sender.undelivered.recv()).await.expect("reported");
    assert_eq!(start.elapsed(), secs(15));
    assert_eq!(undelivered.id, id);
    assert_eq!(undelivered.attempts, 3);
    assert_eq!(undelivered.message.payload(), "lost");
    assert_eq!(undelivered.message.frame, Frame::DataReq { id, payload: "lost".into() });
    assert_eq!(undelivered.message.clone().into_payload(), "lost");

    let stats = sender.handle.stats();
    assert_eq!((stats.sent(), stats.resent(), stats.acked(), stats.undelivered()), (1, 2, 0, 1));
    assert_eq!(stats.undelivered_not_kept(), 0);
    assert_eq!(sender.handle.in_flight(), 0);
    within("settled after the give-up", WAIT, sender.handle.settled()).await;

    // Reported as an event too, exactly once.
    let mut dropped = Vec::new();
    while let Ok(event) = sender.events.try_recv() {
        if let Event::Dropped { reason: DropReason::Undelivered, count, peer } = event {
            dropped.push((count, peer));
        }
    }
    assert_eq!(dropped, [(1, None)]);

    // No fourth DATA_REQ, no second report; a late ACK is ignored.
    assert_eq!(peer.next_frame(secs(60)).await, None);
    peer.ack(id).await;
    assert_eq!(peer.next_frame(secs(1)).await, None);
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!((stats.acked(), stats.undelivered()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn give_ups_past_the_undelivered_byte_mark_are_counted_and_reported_but_not_kept() {
    // The mark at 300 bytes (and room for far more messages): of four
    // 100-byte messages given up, three are kept (0, 100, 200 bytes kept
    // before each); the fourth finds the mark reached.
    let mut config = reliable(RESEND, 1);
    config.undelivered_bytes = 300;
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;
    for _ in 0..4 {
        sender.send_message(Message::new(vec![7u8; 100])).await.expect("sent");
        peer.expect_data_req(WAIT).await;
    }
    within("every give-up", WAIT, sender.handle.settled()).await;
    let stats = sender.handle.stats();
    assert_eq!((stats.undelivered(), stats.undelivered_not_kept()), (4, 1));
    for _ in 0..3 {
        let undelivered = sender.undelivered.try_recv().expect("kept");
        assert_eq!(undelivered.message.payload().len(), 100);
    }
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Empty);
    // Every give-up is an event, kept or not.
    let mut dropped = 0;
    while let Ok(event) = sender.events.try_recv() {
        if let Event::Dropped { reason: DropReason::Undelivered, count, .. } = event {
            dropped += count;
        }
    }
    assert_eq!(dropped, 4);
    // Taken, they make room again.
    sender.send_message(Message::new(vec![8u8; 100])).await.expect("sent");
    peer.expect_data_req(WAIT).await;
    let undelivered = within("the give-up", WAIT, sender.undelivered.recv()).await.expect("kept again");
    assert_eq!(undelivered.message.payload()[0], 8);
}

#[tokio::test(start_paused = true)]
async fn give_up_after_bounds_the_total_time_even_with_attempts_left() {
    let mut config = reliable(RESEND, 100);
    config.give_up_after = secs(12);
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("late").await.expect("sent");
    let mut times = Vec::new();
    for _ in 0..3 {
        let (_, payload) = peer.expect_data_req(WAIT).await;
        assert_eq!(payload, "late");
        times.push(start.elapsed());
    }
    assert_eq!(times, [secs(0), secs(5), secs(10)]);

    let undelivered = within("the give-up", WAIT, sender.undelivered.recv()).await.expect("reported");
    assert_eq!(start.elapsed(), secs(12), "given up when give_up_after has passed, not at the next timer");
    assert_eq!(undelivered.attempts, 3);
    assert_eq!(undelivered.message.payload(), "late");
    assert_eq!(sender.handle.stats().undelivered(), 1);
    assert_eq!(sender.handle.in_flight(), 0);
    assert_eq!(peer.next_frame(secs(60)).await, None);
}

#[tokio::test(start_paused = true)]
async fn give_up_after_shorter_than_the_resend_timeout_allows_one_send() {
    let mut config = reliable(RESEND, 100);
    config.give_up_after = secs(2);
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    sender.send("brief").await.expect("sent");
    let (id, _) = peer.expect_data_req(WAIT).await;
    let undelivered = within("the give-up", WAIT, sender.undelivered.recv()).await.expect("reported");
    assert_eq!(start.elapsed(), secs(2));
    assert_eq!((undelivered.id, undelivered.attempts), (id, 1));
    assert_eq!(peer.next_frame(secs(60)).await, None);
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_limit_holds_at_its_exact_boundary() {
    const LIMIT: usize = 3;
    let mut config = reliable(RESEND, 100);
    config.max_in_flight = LIMIT;
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let start = Instant::now();
    for n in 0..LIMIT {
        assert!(sender.ready_within(secs(1)).await, "send {n} is below the limit");
        sender.send(["a", "b", "c"][n]).await.expect("sent");
    }
    assert_eq!(sender.handle.in_flight(), LIMIT);
    // One more is not ready: checked before any resend timer fires.
    assert!(!sender.ready_within(secs(1)).await, "the limit must hold");
    assert_eq!(start.elapsed(), secs(1));
    assert_eq!(sender.handle.in_flight(), LIMIT);

    let mut ids = Vec::new();
    for _ in 0..LIMIT {
        ids.push(peer.expect_data_req(WAIT).await.0);
    }
    assert_eq!(start.elapsed(), secs(1));
    peer.ack(ids[1]).await;
    assert!(sender.ready_within(secs(1)).await, "one ACK frees one place");
    assert!(start.elapsed() < RESEND);
    sender.send("d").await.expect("sent");
    let (fourth, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "d");
    assert!(!ids.contains(&fourth));
    assert_eq!(sender.handle.in_flight(), LIMIT);
    assert!(!sender.ready_within(secs(1)).await, "at the limit again");
    assert!(start.elapsed() < RESEND);
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_byte_mark_holds_at_its_exact_boundary() {
    const MARK: usize = 10;
    let mut config = reliable(RESEND, 100);
    config.max_in_flight_bytes = MARK;
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;
    let start = Instant::now();

    // 4 + 6 bytes: exactly at the mark, the next send waits.
    sender.send("aaaa").await.expect("sent");
    assert!(sender.ready_within(secs(1)).await, "4 bytes pending, below the mark");
    sender.send("bbbbbb").await.expect("sent");
    assert!(!sender.ready_within(secs(1)).await, "10 bytes pending: at the mark");
    let (four, _) = peer.expect_data_req(WAIT).await;
    let (six, _) = peer.expect_data_req(WAIT).await;

    // The ACK of the 4 bytes leaves 6 pending: room again.
    peer.ack(four).await;
    assert!(sender.ready_within(secs(1)).await, "6 bytes pending");
    // 6 + 3 = 9, one below the mark: still taken.
    sender.send("ccc").await.expect("sent");
    assert!(sender.ready_within(secs(1)).await, "9 bytes pending, one below the mark");
    // A send below the mark is taken whole, even past it; none after it.
    sender.send("ddddd").await.expect("sent");
    assert_eq!(sender.handle.in_flight(), 3);
    assert!(!sender.ready_within(secs(1)).await, "14 bytes pending: past the mark");
    let (three, _) = peer.expect_data_req(WAIT).await;
    let (five, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "ddddd");

    // The 6-byte ACK leaves 8 pending, below the mark.
    peer.ack(six).await;
    assert!(sender.ready_within(secs(1)).await, "8 bytes pending");
    peer.ack(three).await;
    peer.ack(five).await;
    sender.settled().await;
    assert_eq!(sender.handle.in_flight(), 0);
    assert!(start.elapsed() < RESEND, "every step came before any resend");
}

#[tokio::test(start_paused = true)]
async fn publish_with_at_least_once_is_refused_and_the_message_handed_back() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let message =
        Message { to: Destination::Everyone { when_full: WhenFull::Wait }, frame: Frame::Data("all".into()) };
    let error = sender.send_message(message.clone()).await.expect_err("publish must be refused");
    assert!(matches!(error.kind(), SendErrorKind::Refused(_)), "got {:?}", error.kind());
    assert_eq!(error.into_message(), message);

    // Nothing was sent nor is anything pending.
    assert_eq!(peer.next_frame(secs(30)).await, None);
    assert_eq!(sender.handle.stats().sent(), 0);
    assert_eq!(sender.handle.in_flight(), 0, "a refused message is not in flight");
    within("settled with nothing sent", WAIT, sender.handle.settled()).await;

    // The sender still works, and counts one message in flight, not two.
    sender.send("one").await.expect("sent");
    let (id, _) = peer.expect_data_req(WAIT).await;
    assert_eq!(sender.handle.in_flight(), 1);
    peer.ack(id).await;
    sender.settled().await;
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_limit_is_not_used_up_by_refused_publishes() {
    let mut config = reliable(RESEND, 6);
    config.max_in_flight = 1;
    let mut sender = Sender::new(config);
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let publish =
        Message { to: Destination::Everyone { when_full: WhenFull::Drop }, frame: Frame::Data("all".into()) };
    for _ in 0..3 {
        let error = sender.send_message(publish.clone()).await.expect_err("refused");
        assert!(matches!(error.kind(), SendErrorKind::Refused(_)));
    }
    assert_eq!(sender.handle.in_flight(), 0);
    sender.send("one").await.expect("sent");
    let (id, _) = peer.expect_data_req(WAIT).await;
    peer.ack(id).await;
    sender.settled().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_back_every_message_accepted_before_it() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    sender.send("early").await.expect("sent");
    let (early, _) = peer.expect_data_req(WAIT).await;
    // Accepted, and shut down before the driver has had a chance to run.
    sender.send("just before").await.expect("sent");
    sender.handle.shutdown();

    let mut handed_back = Vec::new();
    for _ in 0..2 {
        let undelivered =
            within("every pending message", WAIT, sender.undelivered.recv()).await.expect("reported");
        handed_back.push((undelivered.message.into_payload(), undelivered.attempts));
    }
    handed_back.sort();
    assert_eq!(handed_back, [("early".into(), 1), ("just before".into(), 1)]);
    assert_eq!(sender.handle.stats().undelivered(), 2);
    assert_eq!(sender.handle.in_flight(), 0);
    within("settled after shutdown", WAIT, sender.handle.settled()).await;

    // Nothing is resent after shutdown (the second DATA_REQ went out once).
    let (second, payload) = peer.expect_data_req(WAIT).await;
    assert_eq!(payload, "just before");
    assert_ne!(second, early);
    assert_eq!(peer.next_frame(secs(60)).await, None);

    // A send after shutdown fails and hands the message back.
    let error = sender.send("after").await.expect_err("the sender is shut down");
    assert_eq!(error.kind(), &SendErrorKind::Closed);
    assert_eq!(error.into_message().into_payload(), "after");
    // The driver has ended: nothing more will be reported.
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Closed);
}

#[tokio::test]
async fn the_largest_valid_in_flight_limit_makes_a_layer() {
    let parts = smartsock_transport::Transport::new(smartsock_transport::TransportConfig::default()).unwrap();
    let acks = parts.acks;
    let mut config = AtLeastOnceConfig::default();
    config.max_in_flight = tokio::sync::Semaphore::MAX_PERMITS;
    assert!(config.validate().is_ok());
    // A config that validates must not panic when used.
    smartsock_reliability::AtLeastOnceLayer::new(config, acks).expect("a valid config");

    config.max_in_flight = tokio::sync::Semaphore::MAX_PERMITS + 1;
    assert!(config.validate().is_err());
    config.max_in_flight = 0;
    assert!(config.validate().is_err());

    let mut config = AtLeastOnceConfig::default();
    assert_eq!(config.max_in_flight_bytes, smartsock_reliability::DEFAULT_MAX_IN_FLIGHT_BYTES);
    config.max_in_flight_bytes = 1;
    assert!(config.validate().is_ok());
    config.max_in_flight_bytes = 0;
    let error = config.validate().expect_err("a byte mark of 0 would never take a send");
    assert!(error.contains("max_in_flight_bytes"), "{error}");

    let mut config = AtLeastOnceConfig::default();
    assert_eq!(config.undelivered_bytes, smartsock_reliability::DEFAULT_UNDELIVERED_BYTES);
    (config.undelivered_capacity, config.undelivered_bytes) = (1, 1);
    assert!(config.validate().is_ok());
    config.undelivered_bytes = 0;
    let error = config.validate().expect_err("a byte mark of 0 would keep nothing");
    assert!(error.contains("undelivered_bytes"), "{error}");
    (config.undelivered_capacity, config.undelivered_bytes) = (0, 1);
    let error = config.validate().expect_err("room for no message");
    assert!(error.contains("undelivered_capacity"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_send_that_fails_below_is_handed_back_and_forgotten() {
    let mut sender = Sender::new(reliable(RESEND, 3));
    let mut peer = MemPeer::attach(&sender.transport, "mem").await;
    sender.wait_for_peers(1).await;

    let stranger = PeerId::random();
    let error = sender.send_message(Message::to_peer(stranger, "nobody")).await.expect_err("unknown peer");
    assert_eq!(error.kind(), &SendErrorKind::UnknownPeer(stranger));
    assert_eq!(error.into_message().into_payload(), "nobody");

    // Handed back once, in the error: never resent nor reported again.
    sender.settled().await;
    assert_eq!(sender.handle.in_flight(), 0);
    assert_eq!(peer.next_frame(secs(60)).await, None);
    assert_eq!(sender.handle.stats().undelivered(), 0);
    assert_eq!(sender.undelivered.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test(start_paused = true)]
async fn a_message_to_one_peer_is_resent_to_that_peer_and_its_give_up_names_it() {
    let mut sender = Sender::new(reliable(RESEND, 2));
    let mut chosen = MemPeer::attach(&sender.transport, "chosen").await;
    sender.wait_for_peers(1).await;
    let mut other = MemPeer::attach(&sender.transport, "other").await;
    sender.wait_for_peers(2).await;

    let start = Instant::now();
    sender.send_message(Message::to_peer(chosen.id, "for you")).await.expect("sent");
    let (id, _) = chosen.expect_data_req(WAIT).await;
    let (again, payload) = chosen.expect_data_req(WAIT).await;
    assert_eq!((again, &payload[..], start.elapsed()), (id, &b"for you"[..], secs(5)));

    let undelivered = within("the give-up", WAIT, sender.undelivered.recv()).await.expect("reported");
    assert_eq!(start.elapsed(), secs(10));
    assert_eq!((undelivered.id, undelivered.attempts), (id, 2));
    assert_eq!(undelivered.message.to, Destination::Peer(chosen.id));
    let dropped: Vec<_> = std::iter::from_fn(|| sender.events.try_recv().ok())
        .filter_map(|event| match event {
            Event::Dropped { reason: DropReason::Undelivered, peer, count } => Some((peer, count)),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [(Some(chosen.id), 1)]);
    assert_eq!(other.next_frame(secs(1)).await, None, "never sent to another peer");
}
