//! When at-least-once resends, through the facade: not while the peer that
//! holds a message is connected and still acknowledging the messages sent
//! before it (a resend then only makes a duplicate), and at once, without
//! waiting for the resend timeout, when that peer disconnects.
//!
//! Paused time over in-memory streams (`attach`): the receiver takes its
//! messages on a virtual clock, so timings are exact and the test is fast.

mod common;

use std::time::Duration;

use common::{WAIT, number_of, numbered, within};
use futures::StreamExt;
use smartsock::transport::Side;
use smartsock::{Delivery, Event, Socket};
use tokio::time::Instant;

fn sender(resend_timeout: Duration) -> Socket {
    Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(resend_timeout)
        .give_up(6, Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Connects `sender` (connect end) and `receiver` (bind end) over memory.
async fn link(sender: &Socket, receiver: &Socket, peers_after: usize) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    sender.attach(ours, Side::Connect).unwrap();
    receiver.attach(theirs, Side::Bind).unwrap();
    assert!(within("the sender's peers", sender.wait_for_peers(peers_after)).await);
    assert!(within("the receiver's peer", receiver.wait_for_peers(1)).await);
}

#[tokio::test(start_paused = true)]
async fn a_peer_still_acknowledging_earlier_messages_is_not_sent_duplicates_when_the_timeout_passes() {
    const SENT: usize = 20;
    const RESEND: Duration = Duration::from_secs(1);
    // One message taken (and so acknowledged) per 200 ms: the last waits
    // 4 s, four resend timeouts, while every ACK comes well within one.
    const PACE: Duration = Duration::from_millis(200);
    let sender = sender(RESEND);
    let receiver = Socket::new().unwrap();
    link(&sender, &receiver, 1).await;

    for i in 0..SENT {
        sender.send(numbered(i)).await.unwrap();
    }
    let start = Instant::now();
    for i in 0..SENT {
        tokio::time::sleep(PACE).await;
        let message = within("the next message", receiver.recv()).await.expect("open");
        assert_eq!(number_of(&message), i, "a repeat or a gap");
    }
    assert_eq!(start.elapsed(), PACE * SENT as u32);
    assert!(start.elapsed() > 3 * RESEND, "the test must outlast the resend timeout");
    within("the sender to settle", sender.settled()).await;

    let stats = sender.delivery_stats().expect("at-least-once");
    assert_eq!(stats.resent(), 0, "a message still on its way was sent again");
    assert!(stats.postponed() > 0, "no resend was ever due: the test proves nothing");
    assert_eq!((stats.sent(), stats.acked(), stats.undelivered()), (SENT as u64, SENT as u64, 0));
    // Nothing more arrives, however long we wait.
    assert!(tokio::time::timeout(10 * RESEND, receiver.recv()).await.is_err());
    assert_eq!(receiver.duplicates_dropped(), 0);
    sender.close().await;
    receiver.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_acknowledging_gets_its_messages_resent_once_the_timeout_passes() {
    // The other side of the rule: a connected peer that takes nothing is not
    // "still working", so the resend timeout holds exactly.
    const RESEND: Duration = Duration::from_secs(1);
    let sender = sender(RESEND);
    let receiver = Socket::new().unwrap();
    link(&sender, &receiver, 1).await;
    sender.send(numbered(0)).await.unwrap();
    sender.send(numbered(1)).await.unwrap();
    let start = Instant::now();
    assert_eq!(number_of(&within("message 0", receiver.recv()).await.unwrap()), 0);
    // Message 1 is never taken, so never acknowledged: 0's ACK is the last.
    let stats = sender.delivery_stats().expect("at-least-once");
    within("the resend", async {
        while stats.resent() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let waited = start.elapsed();
    // Resent after the timeout (plus at most one tick of the driver's clock).
    assert!(waited >= RESEND && waited <= RESEND + RESEND / 5, "resent after {waited:?}");
    assert_eq!(stats.resent(), 1);
    assert_eq!(sender.in_flight(), 1);
    sender.close().await;
    receiver.close().await;
}

#[tokio::test(start_paused = true)]
async fn when_a_peer_holding_unacknowledged_messages_disconnects_they_are_resent_at_once_to_another() {
    const SENT: usize = 10;
    const TAKEN: usize = 3;
    // Far longer than the test: only the resend on disconnect can deliver.
    const RESEND: Duration = Duration::from_secs(600);
    let sender = sender(RESEND);
    let mut events = sender.events();
    let first = Socket::new().unwrap();
    link(&sender, &first, 1).await;
    for i in 0..SENT {
        sender.send(numbered(i)).await.unwrap();
    }
    // The first receiver takes (and so acknowledges) three and holds the rest.
    for i in 0..TAKEN {
        assert_eq!(number_of(&within("a message", first.recv()).await.unwrap()), i);
    }
    let stats = sender.delivery_stats().expect("at-least-once");
    within("three ACKs", async {
        while stats.acked() < TAKEN as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let second = Socket::new().unwrap();
    link(&sender, &second, 2).await;

    let first_id = first.identity();
    first.close().await;
    within("the first receiver to go", async {
        loop {
            if let Some(Event::PeerDisconnected { peer, .. }) = events.next().await {
                if peer == first_id {
                    return;
                }
            }
        }
    })
    .await;
    let gone = Instant::now();
    for i in TAKEN..SENT {
        let message = within("a resent message", second.recv()).await.unwrap();
        assert_eq!(number_of(&message), i);
    }
    let waited = gone.elapsed();
    assert!(waited < RESEND / 100, "resent after {waited:?}, not at once");
    within("the sender to settle", sender.settled()).await;
    assert_eq!(stats.resent(), (SENT - TAKEN) as u64);
    assert_eq!((stats.acked(), stats.undelivered()), (SENT as u64, 0));
    // Nothing more comes: no duplicate once the timeout passes either.
    assert!(tokio::time::timeout(2 * RESEND, second.recv()).await.is_err());
    assert!(WAIT < RESEND);
    sender.close().await;
    second.close().await;
}

/// A gap, kept as a test to make pass: a message whose route did not name
/// its peer (sent while no peer was connected and flushed later, or resent
/// once already) is not known to be held by the peer that got it, so when
/// that peer disconnects it waits for the full resend timeout instead of
/// being resent at once (and an ACK for it counts from any peer).
#[tokio::test(start_paused = true)]
#[ignore = "known gap: the flusher's and the resend route's peer is not recorded"]
async fn messages_flushed_from_the_no_peer_buffer_are_resent_at_once_when_their_peer_disconnects() {
    const SENT: usize = 5;
    const RESEND: Duration = Duration::from_secs(600);
    let sender = sender(RESEND);
    let mut events = sender.events();
    // No peer yet: buffered.
    for i in 0..SENT {
        sender.send(numbered(i)).await.unwrap();
    }
    let first = Socket::new().unwrap();
    link(&sender, &first, 1).await;
    assert_eq!(number_of(&within("a message", first.recv()).await.unwrap()), 0);
    let stats = sender.delivery_stats().expect("at-least-once");
    within("one ACK", async {
        while stats.acked() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let second = Socket::new().unwrap();
    link(&sender, &second, 2).await;
    let first_id = first.identity();
    first.close().await;
    within("the first receiver to go", async {
        loop {
            if let Some(Event::PeerDisconnected { peer, .. }) = events.next().await {
                if peer == first_id {
                    return;
                }
            }
        }
    })
    .await;
    for i in 1..SENT {
        let message = within("a resent message", second.recv()).await.unwrap();
        assert_eq!(number_of(&message), i);
    }
    sender.close().await;
    second.close().await;
}

/// A message for one peer by identity waits for that peer while it is away
/// (restarting, reconnecting): a resend that finds it absent does not use
/// up the message's attempts; only `give_up_after` bounds the wait.
#[tokio::test(start_paused = true)]
async fn a_message_by_identity_waits_for_its_peer_to_come_back_without_using_up_its_attempts() {
    const RESEND: Duration = Duration::from_secs(1);
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(RESEND)
        .give_up(2, Duration::from_secs(600))
        .build()
        .unwrap();
    let stats = sender.delivery_stats().expect("at-least-once");
    let mut events = sender.events();
    let named = smartsock::PeerId::random();
    let first = Socket::builder().identity(named).build().unwrap();
    link(&sender, &first, 1).await;
    // The first holder never takes it, so never acknowledges it.
    sender.send_to(named, numbered(7)).await.unwrap();
    first.close().await;
    within("the peer to go", async {
        while !matches!(events.next().await, Some(Event::PeerDisconnected { peer, .. }) if peer == named) {}
    })
    .await;
    // Ten resend timeouts with the peer away: two attempts would have been
    // spent (and the message given up) if absent resends counted.
    tokio::time::sleep(10 * RESEND).await;
    assert_eq!(stats.undelivered(), 0, "given up while its peer was away");

    let second = Socket::builder().identity(named).build().unwrap();
    link(&sender, &second, 1).await;
    let message = within("the message, once its peer is back", second.recv()).await.unwrap();
    assert_eq!(number_of(&message), 7);
    within("the sender to settle", sender.settled()).await;
    assert_eq!((stats.acked(), stats.undelivered()), (1, 0));
    sender.close().await;
    second.close().await;
}
