//! Drops never push connection events out of the events stream: a slow
//! subscriber's drops, one per message, come as one tallied event, so a
//! stream with room for four events still shows every connection around
//! them. Real TCP, generous bounds.

mod common;

use common::{numbered, recv, within};
use futures::StreamExt;
use smartsock::transport::TransportConfig;
use smartsock::{Bytes, DropReason, Event, SendMode, Socket};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_drops_takes_one_place_and_the_connections_around_it_all_show() {
    const TOTAL: usize = 100;
    const SIZE: usize = 512 * 1024;
    let message = |i: usize| {
        let mut bytes = vec![(i % 251) as u8; SIZE];
        bytes[..6].copy_from_slice(&numbered(i));
        Bytes::from(bytes)
    };
    let mut config = TransportConfig::default();
    config.event_capacity = 4;
    let publisher = Socket::builder()
        .transport_config(config)
        .send_mode(SendMode::Publish)
        .peer_queue(4)
        // The slow subscriber never reads what is queued for it: do not wait on close.
        .linger(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let mut events = Box::pin(publisher.events());
    let addr = publisher.bind("127.0.0.1:0").await.unwrap().to_string();
    let fast = Socket::new().unwrap();
    let slow = Socket::builder().receive_queue(1).build().unwrap();
    fast.connect(&addr).unwrap();
    within("the first subscriber", publisher.wait_for_peers(1)).await;
    slow.connect(&addr).unwrap();
    within("the second subscriber", publisher.wait_for_peers(2)).await;
    for i in 0..TOTAL {
        publisher.send(message(i)).await.unwrap();
        assert!(recv(&fast).await == message(i));
    }
    let drops = publisher.slow_subscriber_drops();
    assert!(drops > 4, "{drops} drops: not enough to overflow the stream one event each");
    let late = Socket::new().unwrap();
    late.connect(&addr).unwrap();
    within("the third subscriber", publisher.wait_for_peers(3)).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(within("an event", events.next()).await.unwrap());
    }
    let connected = |id| move |e: &Event| matches!(e, Event::PeerConnected { peer, .. } if *peer == id);
    // The first two in either order: a peer is in the table (what
    // `wait_for_peers` sees) just before its event is sent.
    for id in [fast.identity(), slow.identity()] {
        assert!(seen[..2].iter().any(connected(id)), "{seen:?}");
    }
    assert_eq!(
        seen[2],
        Event::Dropped { peer: Some(slow.identity()), count: drops, reason: DropReason::SlowSubscriber }
    );
    assert!(connected(late.identity())(&seen[3]), "{seen:?}");
    publisher.close().await;
}
