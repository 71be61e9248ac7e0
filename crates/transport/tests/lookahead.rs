//! The look-ahead: while the inbound queue is full, a connection reads on
//! for the ACKs and HEARTBEATs behind the messages waiting for room, holding
//! at most `inbound_lookahead` bytes. Paused tokio time over an in-memory
//! duplex: a sleep returns only once every task is idle, so "the reader has
//! read all it will" is a fact, not a race.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{
    DisconnectReason, Event, MsgId, PeerId, Side, TransportConfig, TransportParts, WAITING_MESSAGE_COST,
};
use tokio::io::{AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::time::{Instant, sleep};

const PEER: PeerId = PeerId::from_bytes([0x15; 16]);
/// The payload of the message that waits for room.
const WAITING: usize = 1000;
/// An ACK on the wire: length, type, id.
const ACK_FRAME: usize = 4 + 1 + 16;

fn full_queue_config(lookahead: usize) -> TransportConfig {
    let mut config = config();
    // One message fills the queue.
    config.inbound_capacity = 1;
    config.inbound_lookahead = lookahead;
    config.heartbeat_interval = Duration::from_secs(1);
    config.heartbeat_timeout = Duration::from_millis(2500);
    config
}

struct Open {
    parts: TransportParts,
    events: smartsock_transport::Events,
    wire: WriteHalf<DuplexStream>,
    _read: tokio::io::ReadHalf<DuplexStream>,
}

async fn open(config: TransportConfig) -> Open {
    let parts = transport(config);
    let mut events = parts.transport.events();
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    parts.transport.serve(ours, Side::Bind, "memory").unwrap();
    let (read, mut wire) = tokio::io::split(theirs);
    wire.write_all(&hello(*PEER.as_bytes())).await.unwrap();
    next_event(&mut events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. }).then_some(()))
        .await;
    Open { parts, events, wire, _read: read }
}

/// Fills the queue with one message and leaves one of `WAITING` bytes
/// waiting for room; returns once the reader has taken both.
async fn fill(open: &mut Open) {
    let mut bytes = data(b"first");
    bytes.extend(data(&pattern(WAITING, 3)));
    open.wire.write_all(&bytes).await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.inbound.len(), 1);
}

/// Takes `frames` messages, message `i` being `size` bytes of `i`, giving
/// the reader time to go on before each take (well within the heartbeat
/// timeout: the connection stays up); fails if one does not come.
async fn take_in_order(open: &Open, lookahead: usize, frames: u8, size: usize) {
    for i in 0..frames {
        sleep(Duration::from_millis(1)).await;
        let message = tokio::time::timeout(Duration::from_millis(100), open.parts.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("look-ahead {lookahead}: message {i} of {frames} never came"))
            .unwrap();
        assert_eq!(&message.payload[..], &vec![i; size][..], "look-ahead {lookahead}: message {i}");
    }
}

const ACK_ID: [u8; 16] = [0xA1; 16];

#[tokio::test(start_paused = true)]
async fn an_ack_behind_a_waiting_message_is_read_if_it_fits_the_lookahead_exactly() {
    // Held: the waiting message (payload + its record), then the ACK's bytes.
    let lookahead = WAITING + WAITING_MESSAGE_COST + ACK_FRAME;
    let mut open = open(full_queue_config(lookahead)).await;
    fill(&mut open).await;
    open.wire.write_all(&ack(ACK_ID)).await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.acks.try_recv(), Some((PEER, MsgId::from_bytes(ACK_ID))));
    // Still nothing taken: the queue is as full as it was.
    assert_eq!(open.parts.inbound.len(), 1);
    let first = open.parts.inbound.recv().await.unwrap();
    assert_eq!(&first.payload[..], b"first");
    let second = within("the waiting message", open.parts.inbound.recv()).await.unwrap();
    assert_eq!(second.payload.len(), WAITING);
    open.parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn one_byte_short_of_the_lookahead_the_ack_waits_until_the_application_takes_a_message() {
    let lookahead = WAITING + WAITING_MESSAGE_COST + ACK_FRAME - 1;
    let mut open = open(full_queue_config(lookahead)).await;
    fill(&mut open).await;
    open.wire.write_all(&ack(ACK_ID)).await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.acks.try_recv(), None, "read past the look-ahead bound");
    // Room: the waiting message moves into the queue, reading goes on.
    let first = open.parts.inbound.recv().await.unwrap();
    assert_eq!(&first.payload[..], b"first");
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.acks.try_recv(), Some((PEER, MsgId::from_bytes(ACK_ID))));
    open.parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn with_no_lookahead_a_full_queue_stops_reading_at_once() {
    let mut open = open(full_queue_config(0)).await;
    fill(&mut open).await;
    open.wire.write_all(&ack(ACK_ID)).await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.acks.try_recv(), None);
    open.parts.inbound.recv().await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(open.parts.acks.try_recv(), Some((PEER, MsgId::from_bytes(ACK_ID))));
    open.parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn many_empty_messages_are_bounded_by_their_records() {
    // Empty payloads cost their records: 10 records' worth of look-ahead
    // holds the waiting message and 9 empty ones; an ACK behind 9 fits in
    // what is left, behind 10 it does not.
    for (empties, read) in [(8, true), (9, false)] {
        let lookahead = WAITING + WAITING_MESSAGE_COST + 9 * WAITING_MESSAGE_COST;
        let mut open = open(full_queue_config(lookahead)).await;
        fill(&mut open).await;
        let mut bytes = Vec::new();
        for _ in 0..empties {
            bytes.extend(data(b""));
        }
        bytes.extend(ack(ACK_ID));
        open.wire.write_all(&bytes).await.unwrap();
        sleep(Duration::from_millis(1)).await;
        assert_eq!(open.parts.acks.try_recv().is_some(), read, "{empties} empty messages");
        open.parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_read_ahead_keep_the_connection_up_and_at_the_bound_silence_is_not_the_peers() {
    let mut open = open(full_queue_config(WAITING + WAITING_MESSAGE_COST + 1000)).await;
    fill(&mut open).await;
    // The application takes nothing for 10 s: the peer's heartbeats are
    // read all the while, and keep the connection up.
    for _ in 0..10 {
        sleep(Duration::from_secs(1)).await;
        open.wire.write_all(&header(1, 0x02)).await.unwrap();
    }
    no_event_queued(&mut open.events);
    // Now fill the look-ahead: reading stops. The peer says nothing more
    // for ten heartbeat timeouts, but it is this end that is not reading.
    open.wire.write_all(&data(&pattern(2000, 9))).await.unwrap();
    sleep(Duration::from_secs(25)).await;
    no_event_queued(&mut open.events);
    assert_eq!(open.parts.transport.peer_table().len(), 1);
    // Reading resumes when the application takes a message; from then on
    // the silence is the peer's, and it is cut one timeout later.
    // Two takes: the first lets the waiting message in and the 2,000-byte
    // one finish arriving (it waits in turn), the second lets that one in.
    let resumed = Instant::now();
    open.parts.inbound.recv().await.unwrap();
    sleep(Duration::from_millis(1)).await;
    open.parts.inbound.recv().await.unwrap();
    let reason = next_event(&mut open.events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
    assert_eq!(resumed.elapsed(), Duration::from_millis(2501));
    open.parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn frames_left_in_the_buffer_at_the_peers_end_are_all_delivered() {
    // Decoding stops at the look-ahead bound with whole frames still in the
    // read buffer; the application's takes let the reader go on, and it may
    // read the peer's end while some are left there. Every one of them still
    // goes up, in order. (They were lost: found by the benchmark, where a
    // 2-worker receiver slower than its sender missed the last frames.)
    // Where the frames fall against the bound depends on the look-ahead to
    // the byte, so every one over a range of them is tried.
    const SMALL: usize = 100;
    const FRAMES: u8 = 12;
    let mut bytes = Vec::new();
    for i in 0..FRAMES {
        bytes.extend(data(&[i; SMALL]));
    }
    for extra in 0..=2 * (SMALL + WAITING_MESSAGE_COST) {
        let lookahead = WAITING + WAITING_MESSAGE_COST + extra;
        let mut open = open(full_queue_config(lookahead)).await;
        fill(&mut open).await;
        open.wire.write_all(&bytes).await.unwrap();
        open.wire.shutdown().await.unwrap();
        sleep(Duration::from_millis(1)).await;
        let first = open.parts.inbound.recv().await.unwrap();
        assert_eq!(&first.payload[..], b"first");
        let waiting = within("the waiting message", open.parts.inbound.recv()).await.unwrap();
        assert_eq!(waiting.payload.len(), WAITING);
        take_in_order(&open, lookahead, FRAMES, SMALL).await;
        let reason = next_event(&mut open.events, "PeerDisconnected", |e| match e {
            Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason, DisconnectReason::PeerClosed, "look-ahead {lookahead}");
        assert!(open.parts.inbound.is_empty());
        open.parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn frames_left_in_the_buffer_go_up_while_the_peer_stays_silent() {
    // The peer does not end: it has sent all it will for now. Decoding
    // stops at the look-ahead bound with whole frames still in the read
    // buffer; then the application takes a queue's worth at once, and every
    // waiting message moves up in one go. The reader must decode the frames
    // left in its buffer before it waits for more bytes: it waited on the
    // socket instead, and they went up only when the peer next spoke (a
    // heartbeat, a resend: seconds later). Found by the benchmark, where an
    // at-least-once receiver slower than its sender got the last messages
    // of a run one resend timeout late. Where the frames fall against the
    // bound depends on the look-ahead to the byte: a range of them is tried.
    const QUEUE: usize = 8;
    // Few and small enough to come in one read of a new connection's
    // (512-byte) buffer, behind the queue's worth before them.
    const SMALL: usize = 20;
    const FRAMES: u8 = 12;
    // A queue's worth, and one more that waits for room.
    let mut queued = Vec::new();
    for _ in 0..=QUEUE {
        queued.extend(data(b"queued"));
    }
    let mut behind = Vec::new();
    for i in 0..FRAMES {
        behind.extend(data(&[i; SMALL]));
    }
    // Look-aheads from the one that lets a read take all of `behind` at
    // once (behind the message waiting for room) to the one that would let
    // all of it be decoded: whole frames are left in the buffer, and none
    // in the stream.
    let waiting = b"queued".len() + WAITING_MESSAGE_COST;
    let cost = SMALL + WAITING_MESSAGE_COST;
    for lookahead in waiting + behind.len()..waiting + usize::from(FRAMES) * cost {
        let mut config = full_queue_config(lookahead);
        config.inbound_capacity = QUEUE;
        let mut open = open(config).await;
        open.wire.write_all(&queued).await.unwrap();
        sleep(Duration::from_millis(1)).await;
        // The queue is full: what comes now is read up to the bound.
        open.wire.write_all(&behind).await.unwrap();
        sleep(Duration::from_millis(1)).await;
        assert_eq!(open.parts.inbound.len(), QUEUE);
        for _ in 0..QUEUE {
            let message = open.parts.inbound.try_recv().expect("queued");
            assert_eq!(&message.payload[..], b"queued");
        }
        sleep(Duration::from_millis(1)).await;
        let message = within("the message that waited", open.parts.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], b"queued");
        take_in_order(&open, lookahead, FRAMES, SMALL).await;
        assert!(open.parts.inbound.is_empty());
        no_event_queued(&mut open.events);
        open.parts.transport.close().await;
    }
}
