//! At-least-once delivery across a receiver that goes away: messages it
//! never took (acknowledged on take) or never got are resent to the receiver
//! that binds the same port next, until every one has been received.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{number_of, numbered, recv, within};
use futures::{FutureExt, StreamExt};
use smartsock::{Delivery, Error, Event, Socket, Undelivered};

/// A short resend timeout and enough attempts to outlast any outage here.
/// The long linger lets `close` wait for every ACK.
fn reliable_sender() -> Result<Socket, Error> {
    Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(Duration::from_millis(200))
        .give_up(1_000, Duration::from_secs(30))
        .linger(Duration::from_secs(10))
        .build()
}

/// Receives on `receiver` into `seen` until it holds `0..total`; returns the
/// numbers received (repeats included).
async fn collect_until_complete(receiver: &Socket, seen: &mut BTreeSet<usize>, total: usize) -> Vec<usize> {
    let mut got = Vec::new();
    within("every message at least once", async {
        // Bounded: repeats are possible, but not this many.
        for _ in 0..total * 20 {
            if seen.len() == total {
                return;
            }
            let n = number_of(&receiver.recv().await.expect("open"));
            assert!(n < total, "unexpected message {n}");
            seen.insert(n);
            got.push(n);
        }
        panic!("far too many repeats: {} received, {} distinct", got.len(), seen.len());
    })
    .await;
    got
}

/// Closes `sender`, which waits (within its linger) for every ACK, while
/// `receiver` keeps taking (and so acknowledging) repeats; then checks that
/// nothing was handed back as undelivered.
async fn assert_settles(sender: Socket, receiver: Socket) {
    let mut events = Box::pin(sender.events());
    let drain = tokio::spawn({
        let receiver = receiver.clone();
        async move { while receiver.recv().await.is_some() {} }
    });
    within("the sender to settle and close", sender.close()).await;
    // The stream ends once the sender's resend task has stopped, after it
    // handed back whatever was still unacknowledged.
    let given_up: Vec<Undelivered> =
        within("the undelivered stream to end", sender.undelivered().collect()).await;
    assert!(given_up.is_empty(), "messages were given up: {given_up:?}");
    // Nor was any give-up or drop reported.
    while let Some(Some(event)) = events.next().now_or_never() {
        assert!(!matches!(event, Event::Dropped { .. }), "a drop was reported: {event:?}");
    }
    receiver.close().await;
    within("the drain task", drain).await.expect("drain task");
}

#[tokio::test]
async fn messages_a_dead_receiver_never_took_reach_the_next_one() -> Result<(), Error> {
    const TOTAL: usize = 100;
    const TAKEN: usize = 10;
    let first = Socket::new()?;
    let addr = first.bind("127.0.0.1:0").await?.to_string();
    let sender = reliable_sender()?;
    sender.connect(&addr)?;
    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }

    // The first receiver takes (and so acknowledges) a few, then dies with
    // the rest queued or on the way: those are not acknowledged.
    let mut seen = BTreeSet::new();
    for _ in 0..TAKEN {
        seen.insert(number_of(&recv(&first).await));
    }
    assert_eq!(seen, (0..TAKEN).collect());
    first.close().await;
    drop(first);

    let second = Socket::new()?;
    second.bind(&addr).await?;
    let got = collect_until_complete(&second, &mut seen, TOTAL).await;
    assert!(got.len() >= TOTAL - TAKEN, "the second receiver got the rest: {}", got.len());
    // The receive side filters repeats from one sender: the application never sees one twice.
    let distinct: BTreeSet<usize> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "a repeat reached the application: {got:?}");
    assert_settles(sender, second).await;
    Ok(())
}

#[tokio::test]
async fn messages_sent_across_a_cut_connection_all_arrive() -> Result<(), Error> {
    const TOTAL: usize = 300;
    let first = Socket::new()?;
    let addr = first.bind("127.0.0.1:0").await?.to_string();
    let sender = reliable_sender()?;
    let mut events = Box::pin(sender.events());
    sender.connect(&addr)?;

    // A third goes out while the first receiver is up...
    for i in 0..TOTAL / 3 {
        sender.send(numbered(i)).await?;
    }
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(number_of(&recv(&first).await));
    }
    // ...which is cut off, with messages still in flight...
    let first_id = first.identity();
    first.close().await;
    drop(first);
    common::disconnected(&mut events, first_id).await;
    // ...a third while nobody is there...
    for i in TOTAL / 3..2 * TOTAL / 3 {
        sender.send(numbered(i)).await?;
    }
    let second = Socket::new()?;
    second.bind(&addr).await?;
    // ...and the last third while the second receiver comes up.
    for i in 2 * TOTAL / 3..TOTAL {
        sender.send(numbered(i)).await?;
    }
    let got = collect_until_complete(&second, &mut seen, TOTAL).await;
    let distinct: BTreeSet<usize> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "a repeat reached the application");
    assert_settles(sender, second).await;
    Ok(())
}

#[tokio::test]
async fn repeats_of_untaken_messages_are_dropped_not_delivered() -> Result<(), Error> {
    const TOTAL: usize = 20;
    let receiver = Socket::new()?;
    let addr = receiver.bind("127.0.0.1:0").await?;
    let sender = reliable_sender()?;
    sender.connect(&addr.to_string())?;
    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }
    // The first message arriving proves the link is up; then nothing is
    // taken (so nothing acknowledged) for five resend timeouts. This sleep is
    // the behaviour under test (the resend timer firing), not a
    // synchronisation: repeats pile up in the receiver's queue meanwhile.
    assert_eq!(recv(&receiver).await, numbered(0));
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let mut got = vec![0];
    for _ in 1..TOTAL {
        got.push(number_of(&recv(&receiver).await));
    }
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>(), "each message once, in order, repeats skipped");
    within("the sender to settle and close", sender.close()).await;
    let given_up: Vec<Undelivered> =
        within("the undelivered stream to end", sender.undelivered().collect()).await;
    assert!(given_up.is_empty(), "messages were given up: {given_up:?}");

    // Whatever is still queued is repeats only: filtered out, never delivered.
    receiver.close().await;
    let rest = within("the closed receiver to drain", receiver.recv()).await;
    assert_eq!(rest, None, "a repeat reached the application");
    assert!(receiver.duplicates_dropped() > 0, "resends were sent and recognised as repeats");
    Ok(())
}

#[tokio::test]
async fn what_one_peer_never_took_is_resent_to_another() -> Result<(), Error> {
    // Round-robin over two receivers; one dies holding its share untaken:
    // the resends go to the survivor.
    const TOTAL: usize = 100;
    let sender = reliable_sender()?;
    let addr = sender.bind("127.0.0.1:0").await?.to_string();
    let (quitter, survivor) = (Socket::new()?, Socket::new()?);
    quitter.connect(&addr)?;
    survivor.connect(&addr)?;
    within("two receivers", sender.wait_for_peers(2)).await;
    let mut events = Box::pin(sender.events());
    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }
    let mut seen = BTreeSet::new();
    for _ in 0..TOTAL / 2 {
        seen.insert(number_of(&recv(&survivor).await));
    }
    let quitter_id = quitter.identity();
    quitter.close().await;
    common::disconnected(&mut events, quitter_id).await;
    let got = collect_until_complete(&survivor, &mut seen, TOTAL).await;
    assert!(got.len() >= TOTAL / 2, "the quitter's share was resent to the survivor");
    assert_settles(sender, survivor).await;
    Ok(())
}

#[tokio::test]
async fn closing_with_no_peer_hands_every_message_back() -> Result<(), Error> {
    const TOTAL: usize = 5;
    let sender =
        Socket::builder().delivery(Delivery::AtLeastOnce).linger(Duration::from_millis(100)).build()?;
    let mut events = Box::pin(sender.events());
    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }
    within("close", sender.close()).await;
    let given_up: Vec<Undelivered> = within("the undelivered stream", sender.undelivered().collect()).await;
    let mut back: Vec<usize> = given_up.iter().map(|u| number_of(u.message.payload())).collect();
    back.sort_unstable();
    assert_eq!(back, (0..TOTAL).collect::<Vec<_>>(), "every message handed back");
    assert!(given_up.iter().all(|u| u.attempts == 1));
    let mut reported = 0;
    while let Some(Some(event)) = events.next().now_or_never() {
        if let Event::Dropped { count, reason: smartsock::DropReason::Undelivered, .. } = event {
            reported += count;
        }
    }
    assert_eq!(reported, TOTAL as u64, "each give-up reported as an event");
    Ok(())
}

#[tokio::test]
async fn resends_during_an_outage_do_not_fill_the_no_peer_buffer() -> Result<(), Error> {
    // 50 distinct messages outstanding, room for 100 while no peer is up. The
    // resend driver routes every resend through the peer set, which buffers
    // one more copy per resend timeout: after a few timeouts the buffer is
    // full of repeats and a 51st distinct message is refused (`BufferFull`
    // here; with `WhenFull::Wait`, the default, the send blocks until a peer
    // comes back, which then receives every copy).
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(Duration::from_millis(100))
        .give_up(1_000, Duration::from_secs(30))
        .buffer(100, 1 << 20)
        .when_buffer_full(smartsock::WhenFull::Drop)
        .build()?;
    for i in 0..50 {
        sender.send(numbered(i)).await?;
    }
    // Time passing is what is under test: ten resend timeouts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sender.send(numbered(50)).await.expect("room for a 51st distinct message");
    Ok(())
}

#[tokio::test]
async fn a_message_handed_back_as_undelivered_is_not_delivered_later() -> Result<(), Error> {
    // Given up while no peer was there, and handed back to the application
    // (which may well send it again): its copies stay in the no-peer buffer
    // and reach the first peer that connects.
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(Duration::from_millis(100))
        .give_up(2, Duration::from_secs(30))
        .build()?;
    sender.send("given up").await?;
    let mut undelivered = Box::pin(sender.undelivered());
    let given_up = within("the give-up", undelivered.next()).await.expect("handed back");
    assert_eq!(given_up.message.payload(), "given up");

    let receiver = Socket::new()?;
    let addr = receiver.bind("127.0.0.1:0").await?;
    sender.connect(&addr.to_string())?;
    within("the peer", sender.wait_for_peers(1)).await;
    sender.send("marker").await?;
    // One connection keeps order: anything before the marker was buffered.
    assert_eq!(recv(&receiver).await, "marker", "the given-up message was delivered after all");
    Ok(())
}
