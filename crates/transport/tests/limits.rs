//! Every limit of the transport, at its exact boundary: frame length, outbox,
//! inbound queue, peers and concurrent handshakes.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::TrySendError;
use smartsock_transport::{DisconnectReason, Event, Frame, Outgoing, PeerId, RefusedReason, Side};

const MAX: usize = 1000;

#[tokio::test]
async fn an_envelope_of_exactly_the_maximum_passes_and_one_byte_more_disconnects_only_that_peer() {
    let mut config = config();
    config.max_frame_length = MAX;
    let server = transport(config);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut offender = RawPeer::handshake(addr, [0x01; 16], server_id).await;
    let mut bystander = RawPeer::handshake(addr, [0x02; 16], server_id).await;
    wait_peer_count(&server.transport, 2).await;

    // DATA with a 999-byte payload: an envelope of exactly 1000.
    let payload = pattern(MAX - 1, 7);
    offender.write(&data(&payload)).await;
    let message = within("the largest DATA", server.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], &payload[..]);
    // DATA_REQ at the maximum too: 16 bytes of id, 983 of payload.
    let payload = pattern(MAX - 17, 9);
    offender.write(&data_req([0x33; 16], &payload)).await;
    let message = within("the largest DATA_REQ", server.inbound.recv()).await.unwrap();
    assert_eq!(message.payload.len(), MAX - 17);

    // A prefix announcing 1001 is refused from the prefix alone: the body never comes.
    offender.write(&header(MAX as u32 + 1, 0x03)).await;
    offender.expect_closed().await;
    let (peer, reason) = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => Some((*peer, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(peer, PeerId::from_bytes([0x01; 16]));
    assert!(matches!(reason, DisconnectReason::Protocol(_)), "{reason:?}");

    // The other peer carries on, both ways.
    let table = wait_peer_count(&server.transport, 1).await;
    assert_eq!(table[0].id(), PeerId::from_bytes([0x02; 16]));
    bystander.write(&data(b"still fine")).await;
    let message = within("DATA from the bystander", server.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes([0x02; 16]), &b"still fine"[..]));
    table[0].try_send(Outgoing::to_this_peer(Frame::Data("and back".into()))).unwrap();
    bystander.expect_bytes(&data(b"and back")).await;
    assert!(server.inbound.is_empty());
    server.transport.close().await;
}

#[tokio::test]
async fn frames_over_the_maximum_are_never_sent() {
    let mut config = config();
    config.max_frame_length = MAX;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x03; 16], server.transport.identity()).await;
    let handle = wait_peer_count(&server.transport, 1).await[0].clone();
    let at_max = pattern(MAX - 1, 1);
    let over = pattern(MAX, 2);
    handle.try_send(Outgoing::to_this_peer(Frame::Data(at_max.clone().into()))).unwrap();
    handle.try_send(Outgoing::to_this_peer(Frame::Data(over.into()))).unwrap();
    handle.try_send(Outgoing::to_this_peer(Frame::Data("after".into()))).unwrap();
    // The oversized one is left out; the connection lives on.
    raw.expect_bytes(&[data(&at_max), data(b"after")].concat()).await;
    raw.write(&data(b"alive")).await;
    assert_eq!(&within("DATA", server.inbound.recv()).await.unwrap().payload[..], b"alive");
    server.transport.close().await;
}

#[tokio::test]
async fn the_outbox_holds_exactly_its_capacity_while_the_writer_is_stuck() {
    const N: usize = 8;
    let mut config = config();
    config.outbox_capacity = N;
    let parts = transport(config);
    // A 64-byte pipe that the peer stops reading after the handshake.
    let (ours, theirs) = tokio::io::duplex(64);
    parts.transport.serve(ours, Side::Connect, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    peer.expect(Frame::hello(parts.transport.identity())).await;
    peer.send(Frame::hello(PeerId::from_bytes([0x0B; 16]))).await;
    let handle = wait_peer_count(&parts.transport, 1).await[0].clone();
    assert_eq!(handle.room(), N);

    // Wedge the writer: a frame bigger than the pipe.
    let big = Frame::Data(pattern(4096, 3).into());
    handle.try_send(Outgoing::to_this_peer(big.clone())).unwrap();
    within("the writer to take the big frame", async {
        while handle.room() < N {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // Exactly N more fit, the next is handed back.
    for i in 0..N {
        assert_eq!(handle.room(), N - i);
        handle.try_send(Outgoing::to_this_peer(Frame::Data(vec![i as u8].into()))).unwrap();
    }
    assert_eq!(handle.room(), 0);
    match handle.try_send(Outgoing::to_this_peer(Frame::Data("one too many".into()))) {
        Err(TrySendError::Full(item)) => assert_eq!(item.frame, Frame::Data("one too many".into())),
        other => panic!("expected Full, got {other:?}"),
    }
    // Still full a moment later: the writer is stuck, nothing drains.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.room(), 0);

    // Reading again unblocks it: everything accepted arrives, in order.
    peer.expect(big).await;
    for i in 0..N {
        peer.expect(Frame::Data(vec![i as u8].into())).await;
    }
    within("room to come back", async {
        while handle.room() < N {
            tokio::task::yield_now().await;
        }
    })
    .await;
    parts.transport.close().await;
}

#[tokio::test]
async fn exactly_the_outbox_capacity_can_be_queued_before_the_writer_runs() {
    const N: usize = 5;
    let mut config = config();
    config.outbox_capacity = N;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x0C; 16], server.transport.identity()).await;
    let handle = wait_peer_count(&server.transport, 1).await[0].clone();
    // No await between the sends: the writer cannot drain meanwhile.
    for i in 0..N {
        handle.try_send(Outgoing::to_this_peer(Frame::Data(vec![i as u8].into()))).unwrap();
    }
    assert!(matches!(handle.try_send(Outgoing::to_this_peer(Frame::Heartbeat)), Err(TrySendError::Full(_))));
    let expected: Vec<u8> = (0..N).flat_map(|i| data(&[i as u8])).collect();
    raw.expect_bytes(&expected).await;
    server.transport.close().await;
}

#[tokio::test]
async fn the_inbound_queue_holds_exactly_its_capacity_and_loses_nothing() {
    const N: usize = 4;
    const SENT: usize = 10;
    let mut config = config();
    config.inbound_capacity = N;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut first = RawPeer::handshake(addr, [0x0D; 16], server_id).await;
    let mut second = RawPeer::handshake(addr, [0x0E; 16], server_id).await;
    wait_peer_count(&server.transport, 2).await;

    // Ten messages in one write, nobody receiving.
    let all: Vec<u8> = (0..SENT).flat_map(|i| data(&[i as u8])).collect();
    first.write(&all).await;
    let wait_len = |n: usize| {
        let inbound = server.inbound.clone();
        async move {
            within(&format!("{n} queued messages"), async {
                while inbound.len() != n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
        }
    };
    wait_len(N).await;
    // It stays at N: the connection stopped reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.inbound.len(), N);
    // Reading stops for every connection, not just the busy one.
    second.write(&data(b"second")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.inbound.len(), N);

    // Taking one lets exactly one more in.
    let message = within("first message", server.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], &[0]);
    wait_len(N).await;

    // Everything arrives, each connection in its own order, nothing lost.
    let mut from_first = vec![0u8];
    let mut from_second = Vec::new();
    for _ in 1..SENT + 1 {
        let message = within("a queued message", server.inbound.recv()).await.unwrap();
        if message.peer == PeerId::from_bytes([0x0D; 16]) {
            from_first.extend_from_slice(&message.payload);
        } else {
            from_second.push(message.payload);
        }
    }
    assert_eq!(from_first, (0..SENT as u8).collect::<Vec<_>>());
    assert_eq!(from_second, vec![bytes::Bytes::from_static(b"second")]);
    assert!(server.inbound.is_empty());
    // And the connections still work.
    first.write(&data(b"more")).await;
    assert_eq!(&within("more", server.inbound.recv()).await.unwrap().payload[..], b"more");
    server.transport.close().await;
}

#[tokio::test]
async fn the_peer_after_max_peers_is_refused() {
    const N: usize = 3;
    let mut config = config();
    config.max_peers = N;
    let server = transport(config);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut peers = Vec::new();
    for i in 0..N {
        peers.push(RawPeer::handshake(addr, [i as u8 + 1; 16], server_id).await);
    }
    wait_peer_count(&server.transport, N).await;

    // Refused before the bind end answers: no HELLO, only the close.
    let mut extra = RawPeer::connect(addr, [0xEE; 16]).await;
    extra.write(&hello([0xEE; 16])).await;
    extra.expect_closed().await;
    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::TooManyPeers);
    assert_eq!(server.transport.peer_table().len(), N);

    // One leaves; now there is room again.
    drop(peers.pop());
    wait_peer_count(&server.transport, N - 1).await;
    let mut again = RawPeer::handshake(addr, [0xEE; 16], server_id).await;
    let table = wait_peer_count(&server.transport, N).await;
    assert!(table.iter().any(|p| p.id() == PeerId::from_bytes([0xEE; 16])));
    again.write(&data(b"in")).await;
    assert_eq!(&within("DATA", server.inbound.recv()).await.unwrap().payload[..], b"in");
    server.transport.close().await;
}

#[tokio::test]
async fn at_max_handshakes_the_oldest_pending_one_is_shed_and_accepting_never_waits() {
    let mut config = config();
    config.max_handshakes = 2;
    // Longer than any wait below: no handshake may end by its timeout here.
    config.handshake_timeout = Duration::from_secs(60);
    let server = transport(config);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();

    // Two connections that start a HELLO and stall (from two addresses, so
    // that the per-address limit plays no part).
    let mut stalled = Vec::new();
    for i in 0..2u8 {
        let mut raw = RawPeer::connect_from(addr, [127, 0, 0, 2 + i], [i; 16]).await;
        raw.write(&hello([i; 16])[..1]).await;
        stalled.push(raw);
    }
    // Both are pending: nothing is answered.
    stalled[1].expect_silence(Duration::from_millis(200)).await;

    // A third, well-behaved connection is answered at once: the oldest
    // stalled one is shed to make room.
    let mut third = RawPeer::connect(addr, [0x33; 16]).await;
    third.write(&hello([0x33; 16])).await;
    third.expect_bytes(&hello(*server_id.as_bytes())).await;
    let table = wait_peer_count(&server.transport, 1).await;
    assert_eq!(table[0].id(), PeerId::from_bytes([0x33; 16]));
    stalled[0].expect_closed().await;
    let refused = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(refused, RefusedReason::Shed);
    // The younger stalled one is still pending.
    stalled[1].expect_silence(Duration::from_millis(200)).await;
    server.transport.close().await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_pending_handshakes() {
    let mut config = config();
    config.max_handshakes_per_address = 2;
    config.handshake_timeout = Duration::from_secs(60);
    let server = transport(config);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();

    // Exactly two stalled handshakes from 127.0.0.3 are allowed...
    let mut stalled = Vec::new();
    for i in 0..2u8 {
        let mut raw = RawPeer::connect_from(addr, [127, 0, 0, 3], [i; 16]).await;
        raw.write(&hello([i; 16])[..1]).await;
        stalled.push(raw);
    }
    stalled[1].expect_silence(Duration::from_millis(200)).await;
    // ...the third from there is closed at once, unanswered...
    let mut over = RawPeer::connect_from(addr, [127, 0, 0, 3], [9; 16]).await;
    over.expect_closed().await;
    let refused = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(refused, RefusedReason::TooManyFromAddress);
    // ...while another address is served as usual.
    let mut other = RawPeer::connect_from(addr, [127, 0, 0, 4], [0x44; 16]).await;
    other.write(&hello([0x44; 16])).await;
    other.expect_bytes(&hello(*server_id.as_bytes())).await;
    wait_peer_count(&server.transport, 1).await;
    // The stalled ones were not disturbed.
    stalled[0].expect_silence(Duration::from_millis(100)).await;
    server.transport.close().await;
}

#[tokio::test]
async fn the_ack_queue_holds_exactly_its_capacity_and_counts_what_it_drops() {
    const N: usize = 3;
    let mut config = config();
    config.ack_capacity = N;
    let mut server = transport(config);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0xAC; 16], server.transport.identity()).await;
    let peer = PeerId::from_bytes([0xAC; 16]);
    raw.write(&(0..=N as u8).flat_map(|i| ack([i; 16])).collect::<Vec<_>>()).await;
    let dropped = next_event(&mut events, "Dropped", |e| match e {
        Event::Dropped { peer, count, reason } => Some((*peer, *count, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(dropped, (Some(peer), 1, smartsock_transport::DropReason::AckQueueFull));
    for i in 0..N as u8 {
        let (from, id) = server.acks.try_recv().expect("a queued ACK");
        assert_eq!((from, id), (peer, smartsock_transport::MsgId::from_bytes([i; 16])));
    }
    assert!(server.acks.try_recv().is_none(), "the ACK over capacity was queued");
    // With room again, the next ACK is queued.
    raw.write(&ack([0x10; 16])).await;
    let (_, id) = within("ACK", server.acks.recv()).await.unwrap();
    assert_eq!(id, smartsock_transport::MsgId::from_bytes([0x10; 16]));
    server.transport.close().await;
}

#[tokio::test]
async fn a_full_inbound_queue_pushes_back_on_the_sender_through_tcp() {
    const N: usize = 4;
    let mut config = config();
    config.inbound_capacity = N;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let raw = RawPeer::handshake(addr, [0x0F; 16], server.transport.identity()).await;
    let peer_id = PeerId::from_bytes([0x0F; 16]);
    // Far more than the socket buffers and the transport's read buffer hold.
    const FRAMES: usize = 32 * 1024;
    let payload = pattern(1020, 5);
    let flood: Vec<u8> = (0..FRAMES).flat_map(|_| data(&payload)).collect();
    let RawPeer { mut stream, .. } = raw;
    let writer = tokio::spawn(async move {
        tokio::io::AsyncWriteExt::write_all(&mut stream, &flood).await.unwrap();
        stream
    });
    within(&format!("{N} queued messages"), async {
        while server.inbound.len() < N {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Nobody receives: the 32 MiB cannot all be written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!writer.is_finished(), "the transport kept reading with its inbound queue full");
    assert_eq!(server.inbound.len(), N);
    // Receiving lets it all through, intact.
    for _ in 0..FRAMES {
        let message = within("a message", server.inbound.recv()).await.unwrap();
        assert_eq!(message.peer, peer_id);
        assert_eq!(&message.payload[..], &payload[..]);
    }
    let _stream = within("the writer", writer).await.unwrap();
    assert!(server.inbound.is_empty());
    server.transport.close().await;
}
