//! The events stream: drops are tallied per peer and reason while unread,
//! so that a flood of them (one per message) takes one place and never
//! pushes a connection event out; connection events alone fill
//! `event_capacity`, to the event.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{ConnectError, DropReason, Event, EventsError, PeerId, TransportConfig};

const X: PeerId = PeerId::from_bytes([0x0A; 16]);
const Y: PeerId = PeerId::from_bytes([0x0B; 16]);

fn capacity(events: usize) -> TransportConfig {
    let mut config = config();
    config.event_capacity = events;
    config
}

/// A connection event, numbered.
fn connection(n: u32) -> Event {
    Event::Reconnecting {
        addr: "127.0.0.1:9".into(),
        attempt: n,
        delay: Duration::from_millis(100),
        error: ConnectError::Refused,
    }
}

fn dropped(peer: PeerId, count: u64, reason: DropReason) -> Event {
    Event::Dropped { peer: Some(peer), count, reason }
}

fn drain(events: &mut smartsock_transport::Events) -> Vec<Result<Event, EventsError>> {
    let mut got = Vec::new();
    loop {
        match events.try_recv() {
            Err(EventsError::Empty) => return got,
            other => got.push(other),
        }
    }
}

#[tokio::test]
async fn ten_thousand_drops_take_one_place_each_per_peer_and_reason_in_the_order_they_began() {
    let parts = transport(capacity(4));
    let mut events = parts.transport.events();
    let t = &parts.transport;
    t.emit(connection(1));
    for _ in 0..10_000 {
        t.emit(dropped(X, 1, DropReason::SlowSubscriber));
    }
    t.emit(connection(2));
    for _ in 0..5 {
        t.emit(dropped(Y, 2, DropReason::PeerGone));
        t.emit(dropped(X, 1, DropReason::PeerGone));
        t.emit(dropped(X, 1, DropReason::SlowSubscriber));
    }
    t.emit(connection(3));
    assert_eq!(
        drain(&mut events),
        vec![
            Ok(connection(1)),
            Ok(dropped(X, 10_005, DropReason::SlowSubscriber)),
            Ok(connection(2)),
            Ok(dropped(Y, 10, DropReason::PeerGone)),
            Ok(dropped(X, 5, DropReason::PeerGone)),
            Ok(connection(3)),
        ]
    );
    // Read: the next drop is a new event.
    t.emit(dropped(X, 1, DropReason::SlowSubscriber));
    assert_eq!(drain(&mut events), vec![Ok(dropped(X, 1, DropReason::SlowSubscriber))]);
    t.close().await;
}

#[tokio::test]
async fn connection_events_fill_the_capacity_exactly_and_drops_never_push_them_out() {
    let parts = transport(capacity(4));
    let t = &parts.transport;
    // At capacity: all four kept, whatever the drops around them.
    let mut events = t.events();
    for n in 1..=4 {
        t.emit(connection(n));
        t.emit(dropped(X, 1, DropReason::Undelivered));
    }
    let got = drain(&mut events);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], Ok(connection(1)));
    assert_eq!(got[1], Ok(dropped(X, 4, DropReason::Undelivered)));
    assert_eq!(got[2..], [Ok(connection(2)), Ok(connection(3)), Ok(connection(4))]);
    // One past it: the oldest is overwritten, and the reader is told.
    for n in 1..=5 {
        t.emit(connection(n));
    }
    let got = drain(&mut events);
    assert_eq!(got[0], Err(EventsError::Lagged(1)));
    assert_eq!(got[1..], [Ok(connection(2)), Ok(connection(3)), Ok(connection(4)), Ok(connection(5))]);
    t.close().await;
}

#[tokio::test]
async fn tallies_for_as_many_peers_as_the_capacity_are_kept_and_one_more_is_missed() {
    let parts = transport(capacity(4));
    let t = &parts.transport;
    let mut events = t.events();
    let peer = |i: u8| PeerId::from_bytes([i; 16]);
    t.emit(connection(1));
    for i in 1..=4 {
        t.emit(dropped(peer(i), 3, DropReason::SlowSubscriber));
    }
    t.emit(connection(2));
    let got = drain(&mut events);
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.iter().all(Result::is_ok));
    for i in 1..=5 {
        t.emit(dropped(peer(i), 3, DropReason::SlowSubscriber));
    }
    t.emit(connection(3));
    let got = drain(&mut events);
    assert_eq!(got[0], Err(EventsError::Lagged(1)));
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[5], Ok(connection(3)), "the connection event was pushed out");
    t.close().await;
}

#[tokio::test]
async fn each_stream_tallies_what_it_has_not_read() {
    let parts = transport(capacity(8));
    let t = &parts.transport;
    let mut reader = t.events();
    let mut idle = t.events();
    t.emit(dropped(X, 1, DropReason::SlowSubscriber));
    assert_eq!(drain(&mut reader), vec![Ok(dropped(X, 1, DropReason::SlowSubscriber))]);
    t.emit(dropped(X, 1, DropReason::SlowSubscriber));
    assert_eq!(drain(&mut reader), vec![Ok(dropped(X, 1, DropReason::SlowSubscriber))]);
    assert_eq!(drain(&mut idle), vec![Ok(dropped(X, 2, DropReason::SlowSubscriber))]);
    // A stream that waits is woken by the next event.
    let waiter = tokio::spawn(async move { reader.recv().await });
    tokio::task::yield_now().await;
    t.emit(connection(7));
    assert_eq!(within("the event", waiter).await.unwrap(), Ok(connection(7)));
    t.close().await;
    drop(parts);
    // The transport has gone: what was kept, then the end.
    assert_eq!(idle.try_recv(), Ok(connection(7)));
    assert_eq!(within("the end", idle.recv()).await, Err(EventsError::Closed));
}
