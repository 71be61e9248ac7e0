//! `close()`: it delivers what is queued first, refuses later sends while
//! handing the message back, and leaves received messages to be taken.

mod common;

use std::time::Duration;

use common::{disconnected, numbered, pair, recv, within};
use smartsock::{Error, Socket};

#[tokio::test]
async fn close_right_after_a_burst_delivers_all_of_it() -> Result<(), Error> {
    // More than one peer queue's worth, so part of the burst is still
    // waiting for room when close is called.
    const BURST: usize = 3_000;
    let (server, client) = pair().await;
    let payload = vec![b'x'; 200];
    for i in 0..BURST {
        let mut message = numbered(i).to_vec();
        message.extend_from_slice(&payload);
        client.send(message).await?;
    }
    within("close", client.close()).await;
    for i in 0..BURST {
        let message = recv(&server).await;
        assert_eq!(&message[..6], &numbered(i)[..], "message {i}");
        assert_eq!(message.len(), 6 + payload.len());
    }
    Ok(())
}

#[tokio::test]
async fn close_waits_for_a_peer_to_take_what_was_buffered() -> Result<(), Error> {
    // Sent and closed before the connection is even up: close lingers until
    // the peer arrives and the buffer is flushed to it.
    const BURST: usize = 100;
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::builder().linger(Duration::from_secs(5)).build()?;
    client.connect(&addr.to_string())?;
    for i in 0..BURST {
        client.send(numbered(i)).await?;
    }
    within("close", client.close()).await;
    for i in 0..BURST {
        assert_eq!(recv(&server).await, numbered(i));
    }
    Ok(())
}

#[tokio::test]
async fn send_after_close_fails_and_hands_the_message_back() -> Result<(), Error> {
    let (server, client) = pair().await;
    let other_handle = client.clone();
    client.close().await;

    let error = within("a refused send", client.send("too late")).await.expect_err("send after close");
    assert!(error.is_closed(), "{error:?}");
    assert!(matches!(error, Error::Send(_)), "{error:?}");
    assert_eq!(error.into_payload().expect("the message is handed back"), "too late");

    // Through another clone, and by identity, the same.
    let error = within("a refused send_to", other_handle.send_to(server.identity(), "also late"))
        .await
        .expect_err("closed");
    assert!(error.is_closed(), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back"), "also late");

    // Binding and connecting are refused too.
    let error = client.bind("127.0.0.1:0").await.expect_err("bind after close");
    assert!(error.is_closed(), "{error:?}");
    let error = client.connect("127.0.0.1:9").expect_err("connect after close");
    assert!(error.is_closed(), "{error:?}");

    // Closing twice is harmless.
    within("a second close", client.close()).await;
    Ok(())
}

#[tokio::test]
async fn recv_after_close_returns_what_was_queued_then_none() -> Result<(), Error> {
    const QUEUED: usize = 25;
    let (server, client) = pair().await;
    let mut server_events = Box::pin(server.events());
    for i in 0..QUEUED {
        client.send(numbered(i)).await?;
    }
    // Closing the client delivers its messages, then ends the connection;
    // the server queues every frame it read before it reports the peer gone.
    let client_id = client.identity();
    client.close().await;
    disconnected(&mut server_events, client_id).await;

    server.close().await;
    for i in 0..QUEUED {
        assert_eq!(within("a queued message", server.recv()).await, Some(numbered(i)));
    }
    assert_eq!(within("the end of the queue", server.recv()).await, None);
    assert_eq!(within("the end of the queue, again", server.recv()).await, None);
    Ok(())
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() -> Result<(), Error> {
    let (server, client) = pair().await;
    let mut events = Box::pin(server.events());
    let client_id = client.identity();
    drop(client);
    disconnected(&mut events, client_id).await;
    assert!(server.peers().is_empty());
    Ok(())
}

#[tokio::test]
async fn concurrent_closes_all_wait_for_the_one_graceful_close() -> Result<(), Error> {
    // Two clones closing at once (say, two tasks shutting down): the second
    // must not cut short the first one's linger, which is still waiting for
    // the peer to take the buffered messages.
    const BURST: usize = 100;
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::builder().linger(Duration::from_secs(5)).build()?;
    client.connect(&addr.to_string())?;
    for i in 0..BURST {
        client.send(numbered(i)).await?;
    }
    let other = client.clone();
    within("both closes", async { tokio::join!(client.close(), other.close()) }).await;
    for i in 0..BURST {
        assert_eq!(recv(&server).await, numbered(i));
    }
    // A close after the close returns at once.
    tokio::time::timeout(Duration::from_millis(100), client.close()).await.expect("an immediate return");
    Ok(())
}

#[tokio::test]
async fn close_ends_a_pending_recv_and_a_send_waiting_for_room() -> Result<(), Error> {
    // No peer, a one-message buffer that waits when full: the second send
    // waits for room until close refuses it and hands it back.
    let lonely = Socket::builder().buffer(1, 1 << 20).linger(Duration::from_millis(100)).build()?;
    let mut events = Box::pin(lonely.events());
    lonely.send("buffered").await?;
    let waiting_send = tokio::spawn({
        let lonely = lonely.clone();
        async move { lonely.send("waiting").await }
    });
    let waiting_recv = tokio::spawn({
        let lonely = lonely.clone();
        async move { lonely.recv().await }
    });
    within("close", lonely.close()).await;

    let error = within("the waiting send", waiting_send).await.expect("task").expect_err("refused");
    assert!(error.is_closed(), "{error:?}");
    assert_eq!(error.into_payload().expect("handed back"), "waiting");
    assert_eq!(within("the waiting recv", waiting_recv).await.expect("task"), None);
    // The buffered message never found a peer: dropped, and reported.
    let event =
        common::next_event(&mut events, "the drop report", |e| matches!(e, smartsock::Event::Dropped { .. }))
            .await;
    assert!(
        matches!(
            event,
            smartsock::Event::Dropped { peer: None, count: 1, reason: smartsock::DropReason::PeerGone }
        ),
        "{event:?}"
    );
    Ok(())
}
