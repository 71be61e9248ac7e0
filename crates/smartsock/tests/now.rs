//! `send_now`, `send_to_now` and `try_recv_from`: one try, no wait, no
//! async, callable from threads that are not in any runtime.

mod common;

use std::time::Duration;

use common::{numbered, recv, recv_from, within};
use smartsock::patterns::SendErrorKind;
use smartsock::{Delivery, Error, PeerId, SendMode, Socket, TryRecvError, WhenFull};

/// `client` (built by the caller) connected to a fresh server.
async fn connect(client: &Socket) -> Result<Socket, Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    client.connect(&addr.to_string())?;
    within("the peer", client.wait_for_peers(1)).await;
    within("the peer", server.wait_for_peers(1)).await;
    Ok(server)
}

/// Waits until `socket` holds `count` received messages, untaken.
async fn queued(socket: &Socket, count: usize) {
    within("messages queued", async {
        while socket.stats().received_queued < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sends_and_receives_from_a_thread_outside_the_runtime() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;
    let sender = std::thread::spawn({
        let (client, server) = (client.clone(), server.clone());
        move || -> Result<(), Error> {
            // Fewer than the outbox holds: every one goes now.
            for i in 0..10 {
                client.send_now(numbered(i))?;
            }
            client.send_to_now(server.identity(), "addressed")?;
            Ok(())
        }
    });
    within("the sending thread", tokio::task::spawn_blocking(move || sender.join()))
        .await
        .expect("joined")
        .expect("no panic")?;
    queued(&server, 11).await;

    let receiver = std::thread::spawn({
        let server = server.clone();
        move || {
            let taken: Vec<_> = (0..11).map(|_| server.try_recv_from()).collect();
            (taken, server.try_recv_from())
        }
    });
    let (taken, after) = within("the receiving thread", tokio::task::spawn_blocking(move || receiver.join()))
        .await
        .expect("joined")
        .expect("no panic");
    let mut expected: Vec<_> = (0..10).map(numbered).collect();
    expected.push("addressed".into());
    let taken: Vec<_> = taken.into_iter().map(|m| m.expect("queued")).collect();
    assert!(taken.iter().all(|(from, _)| *from == client.identity()));
    assert_eq!(taken.into_iter().map(|(_, m)| m).collect::<Vec<_>>(), expected);
    assert_eq!(after, Err(TryRecvError::Empty));

    server.close().await;
    assert_eq!(server.try_recv_from(), Err(TryRecvError::Closed));
    Ok(())
}

#[tokio::test]
async fn try_recv_from_hands_out_what_is_queued_before_the_close() -> Result<(), Error> {
    let client = Socket::new()?;
    let server = connect(&client).await?;
    for i in 0..3 {
        client.send(numbered(i)).await?;
    }
    queued(&server, 3).await;
    tokio::join!(client.close(), server.close());
    for i in 0..3 {
        assert_eq!(server.try_recv_from().map(|(_, m)| m), Ok(numbered(i)));
    }
    assert_eq!(server.try_recv_from(), Err(TryRecvError::Closed));
    Ok(())
}

#[tokio::test]
async fn what_would_wait_is_handed_back() -> Result<(), Error> {
    // The no-peer buffer full.
    let socket = Socket::builder().buffer(2, 1 << 20).when_buffer_full(WhenFull::Wait).build()?;
    socket.send_now("one")?;
    socket.send_now("two")?;
    let refused = socket.send_now("three").expect_err("the buffer is full");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));
    assert_eq!(refused.into_payload().expect("handed back"), "three");

    // A socket with tower layers of the user's: their readiness is async.
    let layered = Socket::builder().layer(tower::layer::util::Identity::new()).build()?;
    let refused = layered.send_now("layered").expect_err("layers are async");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));
    assert_eq!(refused.into_payload().expect("handed back"), "layered");
    // The async send takes it.
    layered.send("layered").await?;
    assert_eq!(layered.stats().buffered, 1);

    // Publish that waits for full subscribers: refused before any copy goes.
    let waiting =
        Socket::builder().send_mode(SendMode::Publish).when_subscriber_full(WhenFull::Wait).build()?;
    let refused = waiting.send_now("publish").expect_err("may wait inside");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));
    assert_eq!(waiting.stats().buffered, 0);

    // At-least-once at its in-flight limit.
    let reliable = Socket::builder().delivery(Delivery::AtLeastOnce).max_in_flight(1).build()?;
    reliable.send_now("tracked")?;
    assert_eq!(reliable.in_flight(), 1);
    let refused = reliable.send_now("over the limit").expect_err("in-flight limit");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));
    assert_eq!(refused.into_payload().expect("handed back"), "over the limit");
    assert_eq!(reliable.in_flight(), 1);
    Ok(())
}

#[tokio::test]
async fn at_least_once_refuses_a_send_now_at_its_in_flight_byte_mark() -> Result<(), Error> {
    let reliable = Socket::builder().delivery(Delivery::AtLeastOnce).max_in_flight_bytes(10).build()?;
    // 4 + 5 bytes: one below the mark, so the next is taken, past it.
    reliable.send_now("aaaa")?;
    reliable.send_now("bbbbb")?;
    reliable.send_now("cccccc")?;
    assert_eq!(reliable.in_flight(), 3);
    let refused = reliable.send_now("d").expect_err("15 bytes in flight, past the mark of 10");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));
    assert_eq!(refused.into_payload().expect("handed back"), "d");
    assert_eq!(reliable.in_flight(), 3);

    // Exactly at the mark: refused too.
    let exact = Socket::builder().delivery(Delivery::AtLeastOnce).max_in_flight_bytes(10).build()?;
    exact.send_now("0123456789")?;
    let refused = exact.send_now("e").expect_err("10 bytes in flight, at the mark");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::WouldWait));

    // The default mark takes all of that: the refusals above were the mark's.
    let roomy = Socket::builder().delivery(Delivery::AtLeastOnce).build()?;
    for message in ["aaaa", "bbbbb", "cccccc", "d", "e"] {
        roomy.send_now(message)?;
    }
    assert_eq!(roomy.in_flight(), 5);

    // A mark of 0 is refused when the socket is built.
    let error =
        Socket::builder().delivery(Delivery::AtLeastOnce).max_in_flight_bytes(0).build().expect_err("0");
    assert!(error.to_string().contains("max_in_flight_bytes"), "{error}");
    // So are the undelivered queue's marks at 0, and taken at 1.
    let builder = || Socket::builder().delivery(Delivery::AtLeastOnce);
    let error = builder().undelivered_queue(1, 0).build().expect_err("0 bytes");
    assert!(error.to_string().contains("undelivered_bytes"), "{error}");
    let error = builder().undelivered_queue(0, 1).build().expect_err("0 messages");
    assert!(error.to_string().contains("undelivered_capacity"), "{error}");
    builder().undelivered_queue(1, 1).build()?;
    Ok(())
}

#[tokio::test]
async fn failures_are_those_of_send() -> Result<(), Error> {
    let socket = Socket::builder().max_frame_length(64).build()?;
    let refused = socket.send_now(vec![0u8; 100]).expect_err("too large");
    assert!(matches!(refused.send_kind(), Some(SendErrorKind::TooLarge { .. })), "{refused:?}");

    let stranger = PeerId::random();
    let refused = socket.send_to_now(stranger, "hello").expect_err("not connected");
    assert_eq!(refused.send_kind(), Some(&SendErrorKind::UnknownPeer(stranger)));
    assert_eq!(refused.into_payload().expect("handed back"), "hello");

    socket.close().await;
    let refused = socket.send_now("late").expect_err("closed");
    assert!(refused.is_closed(), "{refused:?}");
    assert_eq!(refused.into_payload().expect("handed back"), "late");
    Ok(())
}

#[tokio::test]
async fn at_least_once_sent_now_is_tracked_and_acknowledged() -> Result<(), Error> {
    let client = Socket::builder().delivery(Delivery::AtLeastOnce).build()?;
    let server = connect(&client).await?;
    for i in 0..5 {
        client.send_now(numbered(i))?;
    }
    assert_eq!(client.in_flight(), 5);
    for i in 0..5 {
        let (from, message) = recv_from(&server).await;
        assert_eq!((from, message), (client.identity(), numbered(i)));
    }
    within("the ACKs", client.settled()).await;
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.delivery_stats().map(|s| s.acked()), Some(5));
    // And a message is only ever delivered once.
    client.send("last").await?;
    assert_eq!(recv(&server).await, "last");
    assert_eq!(server.try_recv_from(), Err(TryRecvError::Empty));
    Ok(())
}
