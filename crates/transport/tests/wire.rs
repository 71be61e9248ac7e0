//! The transport against a peer that writes and reads the protocol's exact
//! bytes itself over loopback TCP, one byte per write where it matters.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{
    AckError, DisconnectReason, Event, Frame, MsgId, Outgoing, PeerHandle, PeerId, Side, TransportConfig,
    TransportParts,
};
use tokio::io::AsyncWriteExt;

/// Heartbeats far away, so that only the frames a test asks for cross the wire.
fn quiet() -> TransportConfig {
    let mut config = config();
    config.heartbeat_interval = Duration::from_secs(60);
    config.heartbeat_timeout = Duration::from_secs(120);
    config
}

async fn disconnect_reason(events: &mut smartsock_transport::Events) -> DisconnectReason {
    next_event(events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_bytewise_raw_peer_talks_to_a_bind_end_both_ways() {
    let mut server = transport(quiet());
    let server_id = server.transport.identity();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let id = [0x5A; 16];
    let peer = PeerId::from_bytes(id);
    let mut raw = RawPeer::connect(addr, id).await;

    // The bind end says nothing until it has read the whole HELLO...
    raw.expect_silence(Duration::from_millis(300)).await;
    let hello_bytes = hello(id);
    raw.write_bytewise(&hello_bytes[..hello_bytes.len() - 1]).await;
    raw.expect_silence(Duration::from_millis(100)).await;
    raw.write(&hello_bytes[hello_bytes.len() - 1..]).await;
    // ...then answers with exactly 00 00 00 12 01 01 <its identity>.
    let mut expected = vec![0x00, 0x00, 0x00, 0x12, 0x01, 0x01];
    expected.extend_from_slice(server_id.as_bytes());
    raw.expect_bytes(&expected).await;
    let table = wait_peer_count(&server.transport, 1).await;
    assert_eq!(table[0].id(), peer);
    let handle = table[0].clone();

    // DATA, one byte per write.
    raw.write_bytewise(&data(b"byte by byte")).await;
    let message = within("bytewise DATA", server.inbound.recv()).await.unwrap();
    assert_eq!(
        (message.peer, &message.payload[..], message.request.is_none()),
        (peer, &b"byte by byte"[..], true)
    );

    // Heartbeats and unknown types are skipped; the DATA after them arrives.
    raw.write_bytewise(&HEARTBEAT).await;
    let mut unknown = header(4, 0x7F);
    unknown.extend_from_slice(b"ext");
    raw.write_bytewise(&unknown).await;
    raw.write_bytewise(&data(b"")).await;
    let message = within("empty DATA", server.inbound.recv()).await.unwrap();
    assert!(message.payload.is_empty());

    // DATA_REQ is delivered with its id; acknowledging it writes exactly 00 00 00 11 05 <id>.
    let msg_id = [0xC3; 16];
    raw.write_bytewise(&data_req(msg_id, b"please ack")).await;
    let message = within("bytewise DATA_REQ", server.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"please ack");
    let request = message.request.expect("DATA_REQ carries an ack handle");
    assert_eq!(request.id(), MsgId::from_bytes(msg_id));
    assert!(!request.already_sent());
    request.send().unwrap();
    let mut expected_ack = vec![0x00, 0x00, 0x00, 0x11, 0x05];
    expected_ack.extend_from_slice(&msg_id);
    raw.expect_bytes(&expected_ack).await;

    // An ACK from the peer reaches the acks queue, not the inbound one.
    raw.write_bytewise(&ack([0xE4; 16])).await;
    let (from, acked) = within("ACK", server.acks.recv()).await.unwrap();
    assert_eq!((from, acked), (peer, MsgId::from_bytes([0xE4; 16])));
    assert!(server.inbound.is_empty());

    // Frames queued on the handle arrive as exact bytes.
    handle.try_send(Outgoing::to_this_peer(Frame::Data("down".into()))).unwrap();
    raw.expect_bytes(&[0x00, 0x00, 0x00, 0x05, 0x03, b'd', b'o', b'w', b'n']).await;
    handle
        .try_send(Outgoing::to_any_peer(Frame::DataReq {
            id: MsgId::from_bytes([0x11; 16]),
            payload: "r".into(),
        }))
        .unwrap();
    raw.expect_bytes(&data_req([0x11; 16], b"r")).await;
    handle.try_send(Outgoing::to_this_peer(Frame::Ack(MsgId::from_bytes([0x99; 16])))).unwrap();
    raw.expect_bytes(&ack([0x99; 16])).await;
    handle.try_send(Outgoing::to_this_peer(Frame::Heartbeat)).unwrap();
    raw.expect_bytes(&HEARTBEAT).await;

    server.transport.close().await;
    raw.expect_closed().await;
}

#[tokio::test]
async fn a_bytewise_raw_bind_end_talks_to_a_connect_end() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = transport(quiet());
    client.transport.connect(&addr.to_string()).unwrap();
    let (stream, _) = within("accept", listener.accept()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let id = [0x6B; 16];
    let mut raw = RawPeer { stream, id };

    // The connect end writes its HELLO at once, before hearing anything.
    raw.expect_bytes(&hello(*client.transport.identity().as_bytes())).await;
    raw.write_bytewise(&hello(id)).await;
    let table = wait_peer_count(&client.transport, 1).await;
    assert_eq!(table[0].id(), PeerId::from_bytes(id));

    raw.write_bytewise(&data(b"from the bind end")).await;
    let message = within("DATA", client.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes(id), &b"from the bind end"[..]));

    table[0].try_send(Outgoing::to_any_peer(Frame::Data("from the connect end".into()))).unwrap();
    raw.expect_bytes(&data(b"from the connect end")).await;
    client.transport.close().await;
    raw.expect_closed().await;
}

#[tokio::test]
async fn small_and_large_frames_keep_their_order_and_bytes() {
    let server = transport(quiet());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x3C; 16], server.transport.identity()).await;
    let handle = wait_peer_count(&server.transport, 1).await[0].clone();

    // A mix around the size where the writer switches to vectored writes,
    // queued at once so that they go out in one batch.
    let payloads: Vec<Vec<u8>> = [10, 100 * 1024, 3, 16 * 1024, 16 * 1024 - 1, 0, 300 * 1024, 7]
        .iter()
        .enumerate()
        .map(|(i, &len)| pattern(len, i as u8))
        .collect();
    let mut expected = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let frame = if i % 3 == 1 {
            expected.extend(data_req([i as u8; 16], payload));
            Frame::DataReq { id: MsgId::from_bytes([i as u8; 16]), payload: payload.clone().into() }
        } else {
            expected.extend(data(payload));
            Frame::Data(payload.clone().into())
        };
        handle.try_send(Outgoing::to_this_peer(frame)).unwrap();
    }
    raw.expect_bytes(&expected).await;

    // And the other way: large frames from the peer are delivered intact.
    let mut segment = Vec::new();
    for payload in &payloads {
        segment.extend(data(payload));
    }
    raw.write(&segment).await;
    for payload in &payloads {
        let message = within("large DATA", server.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], &payload[..]);
    }
    server.transport.close().await;
}

#[tokio::test]
async fn ack_on_arrival_acknowledges_before_the_application_takes_the_message() {
    let mut config = quiet();
    config.ack_on_arrival = true;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x4D; 16], server.transport.identity()).await;
    raw.write(&data_req([0x0F; 16], b"x")).await;
    // The ACK comes back without anyone receiving the message.
    raw.expect_bytes(&ack([0x0F; 16])).await;
    let message = within("DATA_REQ", server.inbound.recv()).await.unwrap();
    let request = message.request.unwrap();
    assert!(request.already_sent());
    assert_eq!(request.id(), MsgId::from_bytes([0x0F; 16]));
    server.transport.close().await;
}

#[tokio::test]
async fn a_second_hello_after_the_handshake_is_ignored() {
    let server = transport(quiet());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x2E; 16], server.transport.identity()).await;
    let mut segment = hello([0x2E; 16]);
    segment.extend(data(b"after a second hello"));
    raw.write(&segment).await;
    let message = within("DATA", server.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"after a second hello");
    assert_eq!(server.transport.peer_table().len(), 1);
    server.transport.close().await;
}

#[tokio::test]
async fn malformed_frames_after_the_handshake_close_that_connection_only() {
    let server = transport(quiet());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut keeper = RawPeer::handshake(addr, [0xFF; 16], server_id).await;

    let bad_frames: Vec<Vec<u8>> = vec![
        // ACK with a 15-byte body.
        [header(16, 0x05), vec![0; 15]].concat(),
        // DATA_REQ shorter than its msg_id.
        [header(10, 0x04), vec![0; 9]].concat(),
        // HELLO with a short body.
        [header(2, 0x01), vec![1]].concat(),
        // An empty envelope.
        vec![0, 0, 0, 0],
    ];
    for (i, bad) in bad_frames.iter().enumerate() {
        let mut raw = RawPeer::handshake(addr, [i as u8; 16], server_id).await;
        // A good frame first, then the bad one in the same write.
        raw.write(&[data(b"good"), bad.clone()].concat()).await;
        let message = within("the good frame", server.inbound.recv()).await.unwrap();
        assert_eq!(message.peer, PeerId::from_bytes([i as u8; 16]));
        raw.expect_closed().await;
        let reason = disconnect_reason(&mut events).await;
        assert!(matches!(reason, DisconnectReason::Protocol(_)), "case {i}: {reason:?}");
    }

    // EOF inside a frame is a protocol error, not a clean close.
    let mut raw = RawPeer::handshake(addr, [0x77; 16], server_id).await;
    raw.write(&data(b"cut short")[..6]).await;
    raw.stream.shutdown().await.unwrap();
    let reason = disconnect_reason(&mut events).await;
    assert!(matches!(reason, DisconnectReason::Protocol(_)), "{reason:?}");

    // The keeper never noticed.
    keeper.write(&data(b"fine")).await;
    let message = within("DATA from the keeper", server.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes([0xFF; 16]), &b"fine"[..]));
    let table = wait_peer_count(&server.transport, 1).await;
    table[0].try_send(Outgoing::to_this_peer(Frame::Data("ok".into()))).unwrap();
    keeper.expect_bytes(&data(b"ok")).await;
    server.transport.close().await;
}

/// Serves the connect side of an in-memory pipe of `pipe` bytes and completes
/// the handshake from the other side.
async fn open_memory(
    config: TransportConfig,
    pipe: usize,
    peer_id: PeerId,
) -> (TransportParts, MemPeer, PeerHandle) {
    let parts = transport(config);
    let (ours, theirs) = tokio::io::duplex(pipe);
    parts.transport.serve(ours, Side::Connect, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    peer.expect(Frame::hello(parts.transport.identity())).await;
    peer.send(Frame::hello(peer_id)).await;
    let handle = wait_peer_count(&parts.transport, 1).await[0].clone();
    (parts, peer, handle)
}

#[tokio::test]
async fn a_batch_of_many_large_frames_survives_a_tiny_pipe() {
    // A 64-byte pipe makes every write partial, and 40 large frames in one
    // batch need more slices than one vectored write takes.
    let (parts, mut peer, handle) = open_memory(quiet(), 64, PeerId::from_bytes([0x64; 16])).await;
    let frames: Vec<Frame> = (0..40u8)
        .map(|i| match i % 4 {
            3 => Frame::Data(vec![i].into()),
            1 => Frame::DataReq {
                id: MsgId::from_bytes([i; 16]),
                payload: pattern(16 * 1024 + usize::from(i) * 100, i).into(),
            },
            _ => Frame::Data(pattern(16 * 1024 + usize::from(i) * 100, i).into()),
        })
        .collect();
    for frame in &frames {
        handle.try_send(Outgoing::to_this_peer(frame.clone())).unwrap();
    }
    for frame in frames {
        peer.expect(frame).await;
    }
    parts.transport.close().await;
}

#[tokio::test]
async fn an_ack_goes_past_a_full_outbox_and_reports_a_full_lane_then_a_gone_connection() {
    let mut config = quiet();
    config.outbox_capacity = 1;
    config.ack_capacity = 1;
    let (parts, mut peer, handle) = open_memory(config, 64, PeerId::from_bytes([0x65; 16])).await;
    // Wedge the writer and fill the one data slot.
    handle.try_send(Outgoing::to_this_peer(Frame::Data(pattern(4096, 0).into()))).unwrap();
    within("the writer to take the big frame", async {
        while handle.room() < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    handle.try_send(Outgoing::to_this_peer(Frame::Data("slot".into()))).unwrap();
    assert_eq!(handle.room(), 0, "the data outbox is full");

    // ACKs have their own lane: a full data outbox does not refuse them...
    peer.send(Frame::DataReq { id: MsgId::from_bytes([0x01; 16]), payload: "req".into() }).await;
    let first = within("DATA_REQ", parts.inbound.recv()).await.unwrap().request.unwrap();
    assert_eq!(first.send(), Ok(()));
    // ...but the lane is bounded too: with the writer wedged, the next is refused.
    peer.send(Frame::DataReq { id: MsgId::from_bytes([0x02; 16]), payload: "req".into() }).await;
    let second = within("DATA_REQ", parts.inbound.recv()).await.unwrap().request.unwrap();
    assert_eq!(second.send(), Err(AckError::QueueFull));

    drop(peer);
    wait_peer_count(&parts.transport, 0).await;
    assert_eq!(second.send(), Err(AckError::Disconnected));
    assert!(handle.is_closed());
    parts.transport.close().await;
}

#[tokio::test]
async fn the_transports_own_heartbeat_is_exactly_00_00_00_01_02() {
    let mut config = config();
    config.heartbeat_interval = Duration::from_millis(100);
    config.heartbeat_timeout = Duration::from_secs(5);
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::handshake(addr, [0x48; 16], server.transport.identity()).await;
    for _ in 0..3 {
        raw.expect_bytes(&[0x00, 0x00, 0x00, 0x01, 0x02]).await;
    }
    server.transport.close().await;
}
