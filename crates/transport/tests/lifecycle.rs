//! Closing (linger, flushing, the inbound queue's end), dropping, and the
//! errors a caller gets at once.

mod common;

use std::time::Duration;

use common::*;
use futures::FutureExt;
use smartsock_transport::{
    DisconnectReason, DropReason, Event, Frame, Outgoing, PeerId, Side, Transport, TransportConfig,
    TransportError, TransportParts,
};
use tokio::time::Instant;

#[tokio::test]
async fn close_flushes_what_was_queued_to_a_raw_peer() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0xC1; 16], server.transport.identity()).await;
    let handle = wait_peer_count(&server.transport, 1).await[0].clone();

    let mut expected = Vec::new();
    for i in 0..200u32 {
        let payload = pattern(if i % 50 == 0 { 20_000 } else { 30 }, i as u8);
        expected.extend(data(&payload));
        handle.try_send(Outgoing::to_any_peer(Frame::Data(payload.into()))).unwrap();
    }
    within("close", server.transport.close()).await;
    // Every frame, in order, then the end of the stream.
    raw.expect_bytes(&expected).await;
    raw.expect_closed().await;
    let reason = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::Closing);
    // Nothing was left over to drop.
    assert!(
        std::iter::from_fn(|| events.try_recv().ok()).all(|e| !matches!(e, Event::Dropped { .. })),
        "frames were dropped on close"
    );
}

#[tokio::test]
async fn close_flushes_from_one_transport_to_another() {
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let client = transport(config());
    client.transport.connect(&addr.to_string()).unwrap();
    let handle = wait_peer_count(&client.transport, 1).await[0].clone();
    for i in 0..500u32 {
        handle.try_send(Outgoing::to_any_peer(Frame::Data(i.to_be_bytes().to_vec().into()))).unwrap();
    }
    within("close", client.transport.close()).await;
    for i in 0..500u32 {
        let message = within("a flushed message", server.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], &i.to_be_bytes());
    }
    wait_peer_count(&server.transport, 0).await;
    server.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn close_waits_no_longer_than_the_linger_for_a_peer_that_does_not_read() {
    let mut config = config();
    config.linger = Duration::from_millis(1500);
    let TransportParts { transport, mut orphans, .. } = transport(config);
    let mut events = transport.events();
    let (ours, theirs) = tokio::io::duplex(64);
    transport.serve(ours, Side::Connect, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    let peer_id = PeerId::from_bytes([0x1D; 16]);
    peer.expect(Frame::hello(transport.identity())).await;
    peer.send(Frame::hello(peer_id)).await;
    let handle = wait_peer_count(&transport, 1).await[0].clone();
    assert!(matches!(any_event(&mut events).await, Event::PeerConnected { .. }));

    // Wedge the writer, then queue more behind it.
    handle.try_send(Outgoing::to_any_peer(Frame::Data(pattern(4096, 0).into()))).unwrap();
    within("the writer to take the big frame", async {
        while handle.room() < transport.config().outbox_capacity {
            tokio::task::yield_now().await;
        }
    })
    .await;
    handle.try_send(Outgoing::to_any_peer(Frame::Data("reroutable".into()))).unwrap();
    handle.try_send(Outgoing::to_this_peer(Frame::Data("for this peer only".into()))).unwrap();
    handle.try_send(Outgoing::to_this_peer(Frame::Heartbeat)).unwrap();

    let started = Instant::now();
    // The wedged frame and the two queued messages: none confirmed.
    assert_eq!(within("close", transport.close()).await, 3);
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert!(handle.is_closed());

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert_eq!(
        seen,
        vec![
            Event::PeerDisconnected { peer: peer_id, reason: DisconnectReason::Closing },
            // The wedged big frame (never confirmed written) and the one for this peer only.
            Event::Dropped { peer: Some(peer_id), count: 2, reason: DropReason::PeerGone },
        ]
    );
    // What may go elsewhere is handed back, in order.
    let handed_back = orphans.try_recv().expect("orphans");
    assert_eq!(handed_back.peer, peer_id);
    let frames: Vec<Frame> = handed_back.frames.into_iter().map(|o| o.frame).collect();
    assert_eq!(frames, vec![Frame::Data("reroutable".into())]);
}

#[tokio::test]
async fn after_close_every_call_says_closed() {
    let TransportParts { transport, .. } = transport(config());
    assert!(!transport.is_closed());
    transport.close().await;
    assert!(transport.is_closed());
    assert!(matches!(transport.bind("127.0.0.1:0").await, Err(TransportError::Closed)));
    assert!(matches!(transport.connect("127.0.0.1:9"), Err(TransportError::Closed)));
    let (ours, _theirs) = tokio::io::duplex(64);
    assert!(matches!(transport.serve(ours, Side::Bind, "memory"), Err(TransportError::Closed)));
    let connect_with = transport.connect_with("memory", || async {
        Ok::<_, std::io::Error>((tokio::io::duplex(64).0, String::new()))
    });
    assert!(matches!(connect_with, Err(TransportError::Closed)));
    // Closing again is harmless, and so is a clone's close.
    within("second close", transport.clone().close()).await;
}

#[tokio::test]
async fn the_inbound_queue_yields_what_it_holds_then_ends() {
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0xAA; 16], server.transport.identity()).await;
    raw.write(&[data(b"one"), data(b"two"), data(b"three")].concat()).await;
    within("three queued messages", async {
        while server.inbound.len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.transport.close().await;
    for expected in [&b"one"[..], b"two", b"three"] {
        let message = within("a remaining message", server.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], expected);
    }
    assert!(within("the end of the queue", server.inbound.recv()).await.is_err());
    raw.expect_closed().await;
}

#[tokio::test]
async fn dropping_the_last_handle_closes_everything() {
    let TransportParts { transport, inbound, .. } = transport(config());
    let addr = transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0xDD; 16], transport.identity()).await;
    wait_peer_count(&transport, 1).await;
    let clone = transport.clone();
    drop(transport);
    raw.write(&data(b"still open")).await;
    assert_eq!(&within("DATA", inbound.recv()).await.unwrap().payload[..], b"still open");
    drop(clone);
    raw.expect_closed().await;
    // The listener is gone too, and the inbound queue ends.
    assert!(within("the end of the queue", inbound.recv()).await.is_err());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn malformed_addresses_are_refused_at_once() {
    let TransportParts { transport, .. } = transport(config());
    for bad in ["", "localhost", "127.0.0.1", ":80", "host:port", "127.0.0.1:65536", "::1:80", "[::1]"] {
        match transport.bind(bad).now_or_never() {
            Some(Err(TransportError::BadAddress { addr, .. })) => assert_eq!(addr, bad),
            other => panic!("bind({bad:?}): expected BadAddress at once, got {other:?}"),
        }
        match transport.connect(bad) {
            Err(TransportError::BadAddress { addr, .. }) => assert_eq!(addr, bad),
            other => panic!("connect({bad:?}): expected BadAddress, got {other:?}"),
        }
    }
    // Nothing was started by the refused calls.
    assert!(transport.local_addrs().is_empty());
    transport.close().await;
}

#[tokio::test]
async fn binding_a_port_in_use_fails() {
    let TransportParts { transport, .. } = transport(config());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    match transport.bind(&addr).await {
        Err(TransportError::Bind { addr: reported, source }) => {
            assert_eq!(reported, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Bind, got {other:?}"),
    }
    // A port the transport itself holds is in use as well.
    let own = transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    assert!(matches!(transport.bind(&own.to_string()).await, Err(TransportError::Bind { .. })));
    assert_eq!(transport.local_addrs(), vec![own]);
    transport.close().await;
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    type Change = fn(&mut TransportConfig);
    let cases: [(&str, Change); 7] = [
        ("outbox_capacity", |c| c.outbox_capacity = 0),
        ("inbound_capacity", |c| c.inbound_capacity = 0),
        ("max_peers", |c| c.max_peers = 0),
        ("max_handshakes", |c| c.max_handshakes = 0),
        ("max_frame_length", |c| c.max_frame_length = 0),
        ("handshake_timeout", |c| c.handshake_timeout = Duration::ZERO),
        ("heartbeat_timeout", |c| c.heartbeat_timeout = c.heartbeat_interval),
    ];
    for (name, change) in cases {
        let mut config = config();
        change(&mut config);
        match Transport::new(config) {
            Err(TransportError::InvalidConfig(text)) => assert!(text.contains(name), "{name}: {text}"),
            other => panic!("{name}: expected InvalidConfig, got {:?}", other.map(|p| p.transport)),
        }
    }
}

#[test]
fn a_transport_needs_a_runtime() {
    assert!(matches!(Transport::new(TransportConfig::default()), Err(TransportError::NoRuntime)));
}

#[tokio::test]
async fn frames_left_for_a_peer_that_goes_away_are_handed_back_or_counted() {
    for keep_orphans in [true, false] {
        let TransportParts { transport, orphans, .. } = transport(config());
        let mut orphans = keep_orphans.then_some(orphans);
        let mut events = transport.events();
        let (ours, theirs) = tokio::io::duplex(64);
        transport.serve(ours, Side::Bind, "memory").unwrap();
        let mut peer = MemPeer::new(theirs);
        let peer_id = PeerId::from_bytes([0x0A; 16]);
        peer.send(Frame::hello(peer_id)).await;
        peer.expect(Frame::hello(transport.identity())).await;
        let handle = wait_peer_count(&transport, 1).await[0].clone();
        assert!(matches!(any_event(&mut events).await, Event::PeerConnected { .. }));

        handle.try_send(Outgoing::to_this_peer(Frame::Data(pattern(4096, 0).into()))).unwrap();
        within("the writer to take the big frame", async {
            while handle.room() < transport.config().outbox_capacity {
                tokio::task::yield_now().await;
            }
        })
        .await;
        handle.try_send(Outgoing::to_any_peer(Frame::Data("a".into()))).unwrap();
        handle.try_send(Outgoing::to_this_peer(Frame::Data("only here".into()))).unwrap();
        let req = Frame::DataReq { id: smartsock_transport::MsgId::from_bytes([2; 16]), payload: "b".into() };
        handle.try_send(Outgoing::to_any_peer(req.clone())).unwrap();
        handle
            .try_send(Outgoing::to_this_peer(Frame::Ack(smartsock_transport::MsgId::from_bytes([3; 16]))))
            .unwrap();
        drop(peer);

        assert!(
            matches!(any_event(&mut events).await, Event::PeerDisconnected { peer, .. } if peer == peer_id)
        );
        // The big frame the writer was stuck on is counted too: it was never
        // confirmed written.
        let expected_dropped = if keep_orphans { 2 } else { 4 };
        assert_eq!(
            any_event(&mut events).await,
            Event::Dropped { peer: Some(peer_id), count: expected_dropped, reason: DropReason::PeerGone }
        );
        if let Some(orphans) = orphans.as_mut() {
            let handed_back = within("orphans", orphans.recv()).await.unwrap();
            assert_eq!(handed_back.peer, peer_id);
            let frames: Vec<Frame> = handed_back.frames.into_iter().map(|o| o.frame).collect();
            assert_eq!(frames, vec![Frame::Data("a".into()), req]);
        }
        transport.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reported_gone_has_a_closed_handle() {
    // Whoever reacts to PeerDisconnected (on any thread) must find the
    // handle closed: a send to it fails instead of queueing into a dead outbox.
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    for i in 0..50u8 {
        let mut events = server.transport.events();
        let raw = RawPeer::handshake(addr, [i; 16], server.transport.identity()).await;
        let handle = wait_peer_count(&server.transport, 1).await[0].clone();
        drop(raw);
        next_event(&mut events, "PeerDisconnected", |e| {
            matches!(e, Event::PeerDisconnected { .. }).then_some(())
        })
        .await;
        assert!(handle.is_closed(), "round {i}: the handle of a peer reported gone is still open");
        assert!(matches!(
            handle.try_send(Outgoing::to_this_peer(Frame::Data("late".into()))),
            Err(smartsock_transport::TrySendError::Closed(_))
        ));
        assert!(server.transport.peer_table().is_empty());
    }
    server.transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_sending_through_small_queues_lose_nothing() {
    const CLIENTS: usize = 40;
    const EACH: u32 = 500;
    let mut server_config = config();
    server_config.inbound_capacity = 16;
    let server = transport(server_config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().to_string();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client_config = config();
        client_config.outbox_capacity = 8;
        let client = transport(client_config);
        client.transport.connect(&addr).unwrap();
        clients.push(client);
    }
    wait_peer_count(&server.transport, CLIENTS).await;
    let mut senders = Vec::new();
    for client in &clients {
        let handle = wait_peer_count(&client.transport, 1).await[0].clone();
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                let frame = Frame::Data(i.to_be_bytes().to_vec().into());
                handle.send(Outgoing::to_this_peer(frame)).await.expect("the peer stays up");
            }
        }));
    }
    // Each sender's messages arrive complete and in order.
    let mut next = std::collections::HashMap::new();
    for _ in 0..CLIENTS * EACH as usize {
        let message = within("a message", server.inbound.recv()).await.unwrap();
        let value = u32::from_be_bytes(message.payload[..].try_into().unwrap());
        let expected = next.entry(message.peer).or_insert(0u32);
        assert_eq!(value, *expected, "from {}", message.peer);
        *expected += 1;
    }
    assert_eq!(next.len(), CLIENTS);
    assert!(next.values().all(|&n| n == EACH));
    for sender in senders {
        within("a sender", sender).await.unwrap();
    }
    for client in &clients {
        within("client close", client.transport.close()).await;
    }
    wait_peer_count(&server.transport, 0).await;
    server.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn close_half_closes_and_waits_for_the_peer_s_end_while_it_keeps_talking() {
    // The peer reads slowly and sends a HEARTBEAT now and then, as aiomsg
    // peers do. Close must not cut the connection while the peer is still
    // reading: it writes everything, ends its write side, and reads on
    // until the peer's end, which confirms the peer read it all.
    const MESSAGES: usize = 50;
    let mut config = config();
    config.linger = Duration::from_secs(30);
    let TransportParts { transport, .. } = transport(config);
    let (ours, theirs) = tokio::io::duplex(64);
    transport.serve(ours, Side::Connect, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    peer.expect(Frame::hello(transport.identity())).await;
    peer.send(Frame::hello(PeerId::from_bytes([0x2E; 16]))).await;
    let handle = wait_peer_count(&transport, 1).await[0].clone();
    for i in 0..MESSAGES {
        handle.try_send(Outgoing::to_any_peer(Frame::Data(pattern(100, i as u8).into()))).unwrap();
    }
    let started = Instant::now();
    let closing = tokio::spawn({
        let transport = transport.clone();
        async move { transport.close().await }
    });
    let mut received = 0;
    while let Some(frame) = peer.next().await {
        if let Frame::Data(payload) = frame {
            assert_eq!(&payload[..], &pattern(100, received as u8)[..]);
            received += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if received % 10 == 0 {
                peer.send(Frame::Heartbeat).await;
            }
        }
    }
    assert_eq!(received, MESSAGES, "everything, then the end of the stream");
    assert!(!closing.is_finished(), "close waits for the peer's end");
    drop(peer);
    assert_eq!(within("close", closing).await.unwrap(), 0, "everything confirmed");
    assert_eq!(started.elapsed(), Duration::from_millis(100) * MESSAGES as u32);
}
