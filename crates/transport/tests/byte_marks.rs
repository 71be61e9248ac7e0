//! The byte marks at their exact boundaries: `outbox_bytes` (a frame is taken
//! while fewer than N payload bytes are queued for the peer), `inbound_bytes`
//! (a message is queued while fewer than N payload bytes are), and
//! `inbound_capacity` keeping its exact meaning although readers hand over
//! whole batches. Then the unknown-ACK rate limit at its exact boundary.
//!
//! In-memory tests run with paused time: a "nothing more happens" check is a
//! virtual second, so it costs nothing and cannot race.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use smartsock_transport::{
    AckSink, DisconnectReason, Event, Frame, MAX_UNKNOWN_ACKS_PER_SECOND, MsgId, Outgoing, PeerHandle,
    PeerId, Side, TransportConfig, TransportParts, TrySendError,
};
use tokio::io::AsyncWriteExt;

/// Serves one in-memory connection (this transport is its connect end) over
/// a pipe of `pipe` bytes, answers the handshake, and returns the test's end
/// and the transport's handle for the peer.
async fn mem_peer(config: TransportConfig, pipe: usize) -> (TransportParts, MemPeer, PeerHandle) {
    let parts = transport(config);
    let (ours, theirs) = tokio::io::duplex(pipe);
    parts.transport.serve(ours, Side::Connect, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    peer.expect(Frame::hello(parts.transport.identity())).await;
    peer.send(Frame::hello(PeerId::from_bytes([0x0B; 16]))).await;
    let handle = wait_peer_count(&parts.transport, 1).await[0].clone();
    (parts, peer, handle)
}

/// Writes `bytes` to the transport in one write, so that one read can carry
/// every frame in them.
async fn write_raw(peer: &mut MemPeer, bytes: &[u8]) {
    within("a raw write", peer.writer.get_mut().write_all(bytes)).await.unwrap();
}

/// Lets every task run until it waits on something only the test can do.
/// Under paused time the clock jumps ahead when nothing is left to run.
async fn quiesce() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn frame(len: usize, seed: u8) -> Frame {
    Frame::Data(pattern(len, seed).into())
}

/// Wedges the peer's writer: a frame larger than the pipe, which the peer
/// does not read. Waits until the writer has taken it out of the outbox, so
/// that what the test queues next stays queued.
async fn wedge_writer(handle: &PeerHandle) -> Frame {
    let big = frame(4096, 0xEE);
    handle.try_send(Outgoing::to_this_peer(big.clone())).unwrap();
    within("the writer to take the wedging frame", async {
        while handle.queued() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    big
}

#[tokio::test(start_paused = true)]
async fn the_outbox_takes_a_frame_while_under_its_byte_mark_and_hands_back_the_first_at_it() {
    const MARK: usize = 1000;
    let mut config = config();
    config.outbox_bytes = MARK;
    // Far above what the test queues: only the byte mark can refuse.
    config.outbox_capacity = 1024;
    let (parts, mut peer, handle) = mem_peer(config, 64).await;
    let big = wedge_writer(&handle).await;

    // 0, 300, 600 and 900 bytes queued are each under 1000: four are taken,
    // and the outbox then holds 1200, past the mark.
    for i in 0..4u8 {
        assert!(handle.has_room(), "refused with {} bytes queued", 300 * usize::from(i));
        handle.try_send(Outgoing::to_this_peer(frame(300, i))).unwrap();
    }
    assert_eq!(handle.queued(), 4);
    assert!(!handle.has_room());
    // At the byte mark the outbox counts as full, whatever the frame room.
    assert_eq!(handle.room(), 0);
    // Even an empty frame is refused now, and handed back intact.
    for refused in [frame(1, 9), Frame::Data(bytes::Bytes::new())] {
        match handle.try_send(Outgoing::to_this_peer(refused.clone())) {
            Err(TrySendError::Full(item)) => assert_eq!(item.frame, refused),
            other => panic!("expected Full at the byte mark, got {other:?}"),
        }
    }
    quiesce().await;
    assert_eq!(handle.queued(), 4, "a wedged writer drained the outbox");

    // Reading unwedges the writer: everything taken arrives, in order, and
    // the outbox takes frames again.
    peer.expect(big).await;
    for i in 0..4u8 {
        peer.expect(frame(300, i)).await;
    }
    within("room to come back", handle.ready()).await;
    handle.try_send(Outgoing::to_this_peer(frame(300, 4))).unwrap();
    peer.expect(frame(300, 4)).await;
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn one_frame_larger_than_the_byte_mark_passes_an_empty_outbox_and_nothing_follows_it() {
    const MARK: usize = 1000;
    let mut config = config();
    config.outbox_bytes = MARK;
    let (parts, mut peer, handle) = mem_peer(config, 64).await;
    let big = wedge_writer(&handle).await;

    // A frame larger than the whole mark still goes, or it never could.
    handle.try_send(Outgoing::to_this_peer(frame(3 * MARK, 1))).unwrap();
    match handle.try_send(Outgoing::to_this_peer(frame(1, 2))) {
        Err(TrySendError::Full(item)) => assert_eq!(item.frame, frame(1, 2)),
        other => panic!("expected Full after a frame past the mark, got {other:?}"),
    }
    assert_eq!(handle.queued(), 1);

    peer.expect(big).await;
    peer.expect(frame(3 * MARK, 1)).await;
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_inbound_queue_takes_a_message_while_under_its_byte_mark_and_one_take_lets_one_more_in() {
    const MARK: usize = 1000;
    const SENT: u8 = 10;
    let mut config = config();
    config.inbound_bytes = MARK;
    // Far above what the test sends: only the byte mark can stop reading.
    config.inbound_capacity = 1024;
    let (parts, mut peer, _handle) = mem_peer(config, 64 * 1024).await;
    let inbound = &parts.inbound;

    // Ten 300-byte messages in one write: the reader decodes them as one batch.
    let all: Vec<u8> = (0..SENT).flat_map(|i| data(&pattern(300, i))).collect();
    write_raw(&mut peer, &all).await;
    quiesce().await;
    // Taken at 0, 300, 600 and 900 bytes queued; the fifth finds 1200.
    assert_eq!((inbound.len(), inbound.bytes()), (4, 1200));

    // Each take (down to 900 bytes) lets exactly one more in (back to 1200).
    for i in 0..SENT - 4 {
        let message = inbound.try_recv().expect("a queued message");
        assert_eq!(&message.payload[..], &pattern(300, i)[..]);
        quiesce().await;
        assert_eq!((inbound.len(), inbound.bytes()), (4, 1200), "after taking message {i}");
    }
    // The last four were queued, in order, and nothing was lost.
    for i in SENT - 4..SENT {
        let message = inbound.try_recv().expect("a queued message");
        assert_eq!(&message.payload[..], &pattern(300, i)[..]);
    }
    assert_eq!((inbound.len(), inbound.bytes()), (0, 0));
    // The connection lives on.
    write_raw(&mut peer, &data(b"more")).await;
    assert_eq!(&within("more", inbound.recv()).await.unwrap().payload[..], b"more");
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn one_message_larger_than_the_inbound_byte_mark_is_queued_and_nothing_after_it() {
    const MARK: usize = 1000;
    let mut config = config();
    config.inbound_bytes = MARK;
    let (parts, mut peer, _handle) = mem_peer(config, 64 * 1024).await;
    let inbound = &parts.inbound;
    let bytes: Vec<u8> = [data(&pattern(5000, 1)), data(b"x"), data(b"y")].concat();
    write_raw(&mut peer, &bytes).await;
    quiesce().await;
    assert_eq!((inbound.len(), inbound.bytes()), (1, 5000));
    assert_eq!(inbound.try_recv().unwrap().payload.len(), 5000);
    assert_eq!(&within("x", inbound.recv()).await.unwrap().payload[..], b"x");
    assert_eq!(&within("y", inbound.recv()).await.unwrap().payload[..], b"y");
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn inbound_capacity_counts_messages_exactly_when_one_read_carries_a_whole_batch() {
    const N: usize = 4;
    const SENT: u8 = 12;
    let mut config = config();
    config.inbound_capacity = N;
    let (parts, mut peer, _handle) = mem_peer(config, 64 * 1024).await;
    let inbound = &parts.inbound;

    // Twelve messages decoded from one read: the batch must not be let in
    // whole (N + batch), only up to N.
    let all: Vec<u8> = (0..SENT).flat_map(|i| data(&[i])).collect();
    write_raw(&mut peer, &all).await;
    quiesce().await;
    assert_eq!(inbound.len(), N);
    for i in 0..SENT {
        let message = inbound.try_recv().expect("a queued message");
        assert_eq!(&message.payload[..], &[i]);
        quiesce().await;
        assert_eq!(inbound.len(), N.min(usize::from(SENT - 1 - i)), "after taking message {i}");
    }
    parts.transport.close().await;
}

#[tokio::test]
async fn at_the_inbound_byte_mark_tcp_pushes_back_and_nothing_is_dropped() {
    const MARK: usize = 4000;
    // 16 MiB: far more than the socket buffers and the read buffer hold.
    const FRAMES: usize = 16 * 1024;
    let mut config = config();
    config.inbound_bytes = MARK;
    let server = transport(config);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let raw = RawPeer::handshake(addr, [0x0F; 16], server.transport.identity()).await;
    let payload = pattern(1020, 5);
    let flood: Vec<u8> = (0..FRAMES).flat_map(|_| data(&payload)).collect();
    let RawPeer { mut stream, .. } = raw;
    let writer = tokio::spawn(async move {
        stream.write_all(&flood).await.unwrap();
        stream
    });
    // Queued at 0, 1020, 2040 and 3060 bytes: four, holding 4080.
    within("four queued messages", async {
        while server.inbound.len() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // A negative check: nobody receives, so nothing more may be read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the transport kept reading at its inbound byte mark");
    assert_eq!((server.inbound.len(), server.inbound.bytes()), (4, 4080));
    for _ in 0..FRAMES {
        let message = within("a message", server.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], &payload[..]);
    }
    let _stream = within("the writer", writer).await.unwrap();
    assert!(server.inbound.is_empty());
    server.transport.close().await;
}

/// An ACK sink for which every ACK is unknown; it records what it was given.
#[derive(Default)]
struct AllUnknown {
    seen: Mutex<Vec<(PeerId, MsgId)>>,
}

impl AckSink for AllUnknown {
    fn acknowledged(&self, peer: PeerId, ids: &[MsgId]) -> usize {
        self.seen.lock().unwrap().extend(ids.iter().map(|&id| (peer, id)));
        ids.len()
    }
}

fn acks(count: usize, seed: u8) -> Vec<u8> {
    (0..count)
        .flat_map(|i| ack([seed ^ (i as u8), (i >> 8) as u8, 0xAC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_connection_may_send_exactly_the_unknown_ack_limit_in_a_second_and_one_more_closes_it() {
    let (parts, mut peer, _handle) = mem_peer(config(), 256 * 1024).await;
    let sink = Arc::new(AllUnknown::default());
    parts.acks.deliver_to(sink.clone());
    let mut events = parts.transport.events();

    write_raw(&mut peer, &acks(MAX_UNKNOWN_ACKS_PER_SECOND, 1)).await;
    // DATA behind the ACKs proves they were all read and the connection is up.
    write_raw(&mut peer, &data(b"still here")).await;
    let message = within("DATA after the ACKs", parts.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"still here");
    assert_eq!(sink.seen.lock().unwrap().len(), MAX_UNKNOWN_ACKS_PER_SECOND);
    assert_eq!(parts.transport.peer_table().len(), 1);
    no_event_queued(&mut events);

    // One more within the same second.
    write_raw(&mut peer, &acks(1, 2)).await;
    let (who, reason) = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => Some((*peer, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(who, PeerId::from_bytes([0x0B; 16]));
    assert!(matches!(reason, DisconnectReason::Protocol(_)), "{reason:?}");
    assert_eq!(peer.next().await, None, "the connection was not closed");
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_unknown_ack_allowance_starts_again_each_second() {
    let (parts, mut peer, _handle) = mem_peer(config(), 256 * 1024).await;
    let sink = Arc::new(AllUnknown::default());
    parts.acks.deliver_to(sink.clone());

    for round in 0..3u8 {
        write_raw(&mut peer, &acks(MAX_UNKNOWN_ACKS_PER_SECOND, round)).await;
        write_raw(&mut peer, &data(&[round])).await;
        let message = within("DATA after the ACKs", parts.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], &[round]);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(sink.seen.lock().unwrap().len(), 3 * MAX_UNKNOWN_ACKS_PER_SECOND);
    assert_eq!(parts.transport.peer_table().len(), 1);
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn acks_that_the_sink_knows_never_count_against_a_connection() {
    struct AllKnown(Mutex<usize>);
    impl AckSink for AllKnown {
        fn acknowledged(&self, _peer: PeerId, ids: &[MsgId]) -> usize {
            *self.0.lock().unwrap() += ids.len();
            0
        }
    }
    let (parts, mut peer, _handle) = mem_peer(config(), 256 * 1024).await;
    let sink = Arc::new(AllKnown(Mutex::new(0)));
    parts.acks.deliver_to(sink.clone());
    write_raw(&mut peer, &acks(4 * MAX_UNKNOWN_ACKS_PER_SECOND, 3)).await;
    write_raw(&mut peer, &data(b"alive")).await;
    assert_eq!(&within("DATA", parts.inbound.recv()).await.unwrap().payload[..], b"alive");
    assert_eq!(*sink.0.lock().unwrap(), 4 * MAX_UNKNOWN_ACKS_PER_SECOND);
    assert_eq!(parts.transport.peer_table().len(), 1);
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_sink_installed_after_a_peer_connected_still_gets_that_peers_acks() {
    // The reliability layer may be built after the first connections are up
    // (the receiver's documented use): their ACKs must reach it all the same,
    // not go to the queue that `deliver_to` consumed.
    let (parts, mut peer, _handle) = mem_peer(config(), 64 * 1024).await;
    let sink = Arc::new(AllUnknown::default());
    parts.acks.deliver_to(sink.clone());
    write_raw(&mut peer, &acks(3, 7)).await;
    write_raw(&mut peer, &data(b"after")).await;
    assert_eq!(&within("DATA", parts.inbound.recv()).await.unwrap().payload[..], b"after");
    let seen = sink.seen.lock().unwrap().clone();
    let expected: Vec<(PeerId, MsgId)> = (0..3usize)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..3].copy_from_slice(&[7 ^ (i as u8), 0, 0xAC]);
            (PeerId::from_bytes([0x0B; 16]), MsgId::from_bytes(id))
        })
        .collect();
    assert_eq!(seen, expected);
    parts.transport.close().await;
}
