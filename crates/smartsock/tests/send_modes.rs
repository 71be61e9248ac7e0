//! Send modes end to end over loopback TCP: round-robin shares, publish
//! fan-out, sends by identity under both modes, and sender identities on
//! receive.

mod common;

use common::{number_of, numbered, recv, recv_from, within};
use smartsock::{Error, PeerId, SendMode, Socket};

/// Receives from `socket` until `count` messages have arrived.
async fn take(socket: &Socket, count: usize) -> Vec<usize> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(number_of(&recv(socket).await));
    }
    got
}

#[tokio::test]
async fn round_robin_gives_each_of_three_receivers_an_exact_share() -> Result<(), Error> {
    const TOTAL: usize = 300;
    let sender = Socket::builder().send_mode(SendMode::RoundRobin).build()?;
    let addr = sender.bind("127.0.0.1:0").await?.to_string();
    let receivers: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for receiver in &receivers {
        receiver.connect(&addr)?;
    }
    within("three receivers", sender.wait_for_peers(3)).await;

    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }

    let shares = within("every share", async {
        let (a, b, c) =
            tokio::join!(take(&receivers[0], 100), take(&receivers[1], 100), take(&receivers[2], 100));
        [a, b, c]
    })
    .await;
    // Each receiver got every third message, in order, and together all of them.
    let mut all = Vec::new();
    for share in &shares {
        assert_eq!(share.len(), TOTAL / 3);
        let first = share[0];
        assert!(first < 3, "a share starts within the first cycle: {first}");
        let expected: Vec<usize> = (first..TOTAL).step_by(3).collect();
        assert_eq!(share, &expected, "round-robin cycles over the peers");
        all.extend_from_slice(share);
    }
    all.sort_unstable();
    assert_eq!(all, (0..TOTAL).collect::<Vec<_>>());

    // Nothing more is on its way: one more cycle lands one message on each.
    for i in TOTAL..TOTAL + 3 {
        sender.send(numbered(i)).await?;
    }
    let mut extra = Vec::new();
    for receiver in &receivers {
        extra.push(number_of(&recv(receiver).await));
    }
    extra.sort_unstable();
    assert_eq!(extra, vec![TOTAL, TOTAL + 1, TOTAL + 2]);
    Ok(())
}

#[tokio::test]
async fn publish_gives_every_subscriber_every_message_in_order() -> Result<(), Error> {
    const TOTAL: usize = 200;
    // Here the publisher is the connect end, dialing three bound subscribers.
    let publisher = Socket::builder().send_mode(SendMode::Publish).build()?;
    let subscribers: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for subscriber in &subscribers {
        let addr = subscriber.bind("127.0.0.1:0").await?;
        publisher.connect(&addr.to_string())?;
    }
    within("three subscribers", publisher.wait_for_peers(3)).await;

    for i in 0..TOTAL {
        publisher.send(numbered(i)).await?;
    }
    let everything: Vec<usize> = (0..TOTAL).collect();
    let (a, b, c) = within("every copy", async {
        tokio::join!(take(&subscribers[0], TOTAL), take(&subscribers[1], TOTAL), take(&subscribers[2], TOTAL))
    })
    .await;
    assert_eq!(a, everything);
    assert_eq!(b, everything);
    assert_eq!(c, everything);
    assert_eq!(publisher.slow_subscriber_drops(), 0);
    Ok(())
}

/// With three clients connected to a server of `mode`, messages sent to one
/// identity reach that client only.
async fn send_to_reaches_exactly_that_peer(mode: SendMode) -> Result<(), Error> {
    const EACH: usize = 20;
    let server = Socket::builder().send_mode(mode).build()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let clients: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for client in &clients {
        client.connect(&addr)?;
    }
    within("three clients", server.wait_for_peers(3)).await;

    // Interleaved, so a routing mistake would show up in someone else's queue.
    for i in 0..EACH {
        for (k, client) in clients.iter().enumerate() {
            server.send_to(client.identity(), format!("for {k}: {i}")).await?;
        }
    }
    // A final marker per client: one connection keeps order, so anything
    // misrouted to a client arrives before its marker.
    for client in &clients {
        server.send_to(client.identity(), "end").await?;
    }
    for (k, client) in clients.iter().enumerate() {
        let mut got = Vec::new();
        loop {
            let message = recv(client).await;
            if message == "end" {
                break;
            }
            got.push(message);
            assert!(got.len() <= EACH, "client {k} received more than its own messages: {got:?}");
        }
        let expected: Vec<String> = (0..EACH).map(|i| format!("for {k}: {i}")).collect();
        assert_eq!(got, expected, "client {k}");
    }
    Ok(())
}

#[tokio::test]
async fn send_to_reaches_exactly_that_peer_under_round_robin() -> Result<(), Error> {
    send_to_reaches_exactly_that_peer(SendMode::RoundRobin).await
}

#[tokio::test]
async fn send_to_reaches_exactly_that_peer_under_publish() -> Result<(), Error> {
    send_to_reaches_exactly_that_peer(SendMode::Publish).await
}

#[tokio::test]
async fn recv_from_reports_the_senders_identity() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let alice = Socket::new()?;
    let bob = Socket::new()?;
    alice.connect(&addr)?;
    bob.connect(&addr)?;
    within("two clients", server.wait_for_peers(2)).await;
    assert_ne!(alice.identity(), bob.identity());

    for i in 0..10 {
        alice.send(format!("alice {i}")).await?;
        bob.send(format!("bob {i}")).await?;
    }
    let mut from_alice = Vec::new();
    let mut from_bob = Vec::new();
    for _ in 0..20 {
        let (from, message) = recv_from(&server).await;
        let text = String::from_utf8(message.to_vec()).expect("utf-8");
        if from == alice.identity() {
            from_alice.push(text);
        } else if from == bob.identity() {
            from_bob.push(text);
        } else {
            panic!("a message from an unknown identity {from}: {text:?}");
        }
    }
    assert_eq!(from_alice, (0..10).map(|i| format!("alice {i}")).collect::<Vec<_>>());
    assert_eq!(from_bob, (0..10).map(|i| format!("bob {i}")).collect::<Vec<_>>());

    // And the other way: replies name the server, and reach who asked.
    server.send_to(bob.identity(), "to bob").await?;
    let (from, message) = recv_from(&bob).await;
    assert_eq!(from, server.identity());
    assert_eq!(message, "to bob");
    Ok(())
}

#[tokio::test]
async fn a_chosen_identity_is_what_peers_see() -> Result<(), Error> {
    let chosen = PeerId::random();
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::builder().identity(chosen).build()?;
    assert_eq!(client.identity(), chosen);
    client.connect(&addr.to_string())?;
    client.send("hi").await?;
    let (from, message) = recv_from(&server).await;
    assert_eq!((from, message.as_ref()), (chosen, &b"hi"[..]));
    assert_eq!(server.peers(), vec![chosen]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_drops_for_a_slow_subscriber_only() -> Result<(), Error> {
    // One subscriber keeps up (the publisher waits for it before each
    // message), one reads nothing: once its connection and queue are full,
    // its copies are dropped and counted, and the fast one still gets all.
    const TOTAL: usize = 100;
    const SIZE: usize = 512 * 1024;
    let message = |i: usize| {
        let mut bytes = vec![(i % 251) as u8; SIZE];
        bytes[..6].copy_from_slice(&numbered(i));
        smartsock::Bytes::from(bytes)
    };
    let publisher = Socket::builder().send_mode(SendMode::Publish).peer_queue(4).build()?;
    let mut events = Box::pin(publisher.events());
    let addr = publisher.bind("127.0.0.1:0").await?.to_string();
    let fast = Socket::new()?;
    let slow = Socket::builder().receive_queue(1).build()?;
    fast.connect(&addr)?;
    slow.connect(&addr)?;
    within("two subscribers", publisher.wait_for_peers(2)).await;

    for i in 0..TOTAL {
        publisher.send(message(i)).await?;
        assert!(recv(&fast).await == message(i), "the fast subscriber's message {i}");
    }
    let drops = publisher.slow_subscriber_drops();
    assert!(drops > 0, "50 MB cannot all be queued for a subscriber that does not read");
    let event = common::next_event(&mut events, "a slow-subscriber drop", |e| {
        matches!(e, smartsock::Event::Dropped { reason: smartsock::DropReason::SlowSubscriber, .. })
    })
    .await;
    // Every drop so far, tallied in one event: they happened while it was
    // unread, and one event per message could push connection events out.
    assert!(
        matches!(event, smartsock::Event::Dropped { peer: Some(p), count, .. } if p == slow.identity() && count == drops),
        "{event:?}, {drops} drops"
    );

    // The slow one now reads: it gets exactly the copies that were not
    // dropped, in order and intact, and then what is published next.
    let kept = TOTAL - drops as usize;
    let mut last = None;
    for _ in 0..kept {
        let got = recv(&slow).await;
        let i = number_of(&got[..6]);
        assert!(got == message(i), "message {i} intact");
        assert!(last.is_none_or(|last| i > last), "in order: {i} after {last:?}");
        last = Some(i);
    }
    publisher.send("after").await?;
    assert_eq!(recv(&slow).await, "after");
    assert_eq!(recv(&fast).await, "after");
    assert_eq!(publisher.slow_subscriber_drops(), drops);
    Ok(())
}
