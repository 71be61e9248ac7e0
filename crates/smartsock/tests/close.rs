//! `close()`: it delivers what is queued first, refuses later sends while
//! handing the message back, and leaves received messages to be taken.

mod common;

use std::time::Duration;

use common::{disconnected, numbered, pair, recv, within};
use smartsock::transport::DEFAULT_OUTBOX_CAPACITY;
use smartsock::{Error, Socket};

#[tokio::test]
async fn close_right_after_a_burst_delivers_all_of_it() -> Result<(), Error> {
    // More than one peer queue's worth, so part of the burst is still
    // waiting for room when close is called.
    const BURST: usize = DEFAULT_OUTBOX_CAPACITY + 2_000;
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
    assert!(error.send_kind().is_some(), "{error:?}");
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

/// A raw aiomsg peer on the bind end that reads slowly and, like every
/// aiomsg peer, sends a HEARTBEAT every second meanwhile. Counts the DATA
/// frames it reads until the sender's end, then closes its own.
async fn slow_heartbeating_peer(listener: tokio::net::TcpListener) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEARTBEAT: [u8; 5] = [0, 0, 0, 1, 2];
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut hello = [0u8; 22];
    stream.read_exact(&mut hello).await.expect("the connect end's HELLO");
    let mut ours = vec![0, 0, 0, 18, 1, 1];
    ours.extend_from_slice(&[7; 16]);
    stream.write_all(&ours).await.expect("our HELLO");
    let mut buffered = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut data_frames = 0;
    let mut last_heartbeat = tokio::time::Instant::now();
    loop {
        if last_heartbeat.elapsed() >= Duration::from_secs(1) {
            // The sender may already have cut the connection (the bug):
            // the count then tells.
            let _ = stream.write_all(&HEARTBEAT).await;
            last_heartbeat = tokio::time::Instant::now();
        }
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        buffered.extend_from_slice(&chunk[..read]);
        let mut at = 0;
        while buffered.len() >= at + 4 {
            let len = u32::from_be_bytes(buffered[at..at + 4].try_into().expect("4 bytes")) as usize;
            if buffered.len() < at + 4 + len {
                break;
            }
            if buffered[at + 4] == 3 {
                data_frames += 1;
            }
            at += 4 + len;
        }
        buffered.drain(..at);
        // About 800 KB/s: the burst takes seconds to read.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    data_frames
}

#[tokio::test]
async fn close_delivers_everything_to_a_slow_peer_that_sends_heartbeats() -> Result<(), Error> {
    // As found: 3,000 messages of about 920 B, closed at once, to a peer
    // that reads slowly and sends a HEARTBEAT every second. A socket
    // closed with the peer's bytes unread is reset by the kernel, and
    // whatever it had not sent yet is lost: about 900 arrived.
    const BURST: usize = 3_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let peer = tokio::spawn(slow_heartbeating_peer(listener));
    // Generous over real sockets: the read takes a few seconds.
    let client = Socket::builder().linger(Duration::from_secs(60)).build()?;
    client.connect(&addr.to_string())?;
    for i in 0..BURST {
        let mut message = numbered(i).to_vec();
        message.resize(920, b'x');
        client.send(message).await?;
    }
    let report = tokio::time::timeout(Duration::from_secs(60), client.close()).await.expect("close");
    assert_eq!(report, smartsock::CloseReport::default(), "everything confirmed");
    assert_eq!(peer.await.expect("the peer's task"), BURST);
    Ok(())
}

#[tokio::test]
async fn close_reports_what_a_peer_did_not_confirm_in_time() -> Result<(), Error> {
    // The peer never takes its messages, so it never reads the end of the
    // connection: nothing can be confirmed, and the report says so.
    const BURST: usize = 2_000;
    let server = Socket::builder().receive_queue(16).build()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::builder().linger(Duration::from_millis(300)).build()?;
    client.connect(&addr.to_string())?;
    assert!(within("the connection", client.wait_for_peers(1)).await);
    for i in 0..BURST {
        client.send(numbered(i)).await?;
    }
    let report = within("close", client.close()).await;
    assert_eq!(report.stranded, 0);
    assert_eq!(report.unacknowledged, 0);
    assert_eq!(report.unconfirmed, BURST as u64, "{report:?}");
    assert_eq!(report.not_confirmed(), BURST as u64);
    assert!(!report.is_complete());
    Ok(())
}
