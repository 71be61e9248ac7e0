//! The outbox's buffers: which are kept for reuse, and for how long.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use super::*;

/// Hands an outbox an emptied encode buffer of `capacity` bytes, as the
/// writer does when it takes a batch; the outbox, if it kept the buffer.
fn keeps_a_spare_of(capacity: usize) -> Option<Outbox> {
    let outbox = Outbox::new(16, 1 << 20, 16, 1 << 24);
    let spare = BytesMut::with_capacity(capacity);
    assert_eq!(spare.capacity(), capacity);
    let mut cx = Context::from_waker(Waker::noop());
    let taken = outbox.poll_take(&mut cx, &mut Vec::new(), &mut VecDeque::new(), &mut Some(spare));
    assert!(taken.is_pending(), "nothing was queued");
    let kept = outbox.lock().spare.is_some();
    kept.then_some(outbox)
}

/// Fills an outbox at the default marks with frames of `payload` bytes
/// (DATA_REQ: the longest header), as a sender faster than its writer
/// does, and returns the capacity of the buffer they were encoded into.
fn encoded_capacity_of_a_full_default_outbox(payload: usize) -> usize {
    let outbox = Outbox::new(crate::DEFAULT_OUTBOX_CAPACITY, crate::DEFAULT_OUTBOX_BYTES, 16, 1 << 24);
    let frame = Frame::DataReq { id: MsgId::random(), payload: bytes::Bytes::from(vec![7; payload]) };
    while outbox.try_push_frame(&frame, false).is_ok() {}
    let mut cx = Context::from_waker(Waker::noop());
    let mut chunks = VecDeque::new();
    let taken = outbox.poll_take(&mut cx, &mut Vec::new(), &mut chunks, &mut None);
    assert_eq!(taken, Poll::Ready(true));
    match chunks.into_iter().collect::<Vec<_>>().as_slice() {
        [Chunk::Encoded { bytes, .. }] => bytes.capacity(),
        other => panic!("{} chunks, not one encoded run", other.len()),
    }
}

#[test]
fn the_buffer_of_a_full_outbox_of_small_frames_at_the_default_marks_is_kept() {
    for payload in [16, 64, 252, 256, 1024, 4096, VECTORED_MIN - 1] {
        let capacity = encoded_capacity_of_a_full_default_outbox(payload);
        assert!(capacity <= MAX_KEPT_ENCODED, "{payload} B frames: a buffer of {capacity} bytes");
    }
}

#[test]
fn an_emptied_encode_buffer_is_kept_up_to_its_bound_and_not_past_it() {
    assert!(keeps_a_spare_of(MAX_KEPT_ENCODED).is_some());
    assert!(keeps_a_spare_of(MAX_KEPT_ENCODED + 1).is_none());
}

#[test]
fn an_idle_outbox_keeps_a_small_encode_buffer_only() {
    let outbox = keeps_a_spare_of(IDLE_KEPT_ENCODED).expect("kept");
    outbox.release_idle_buffers();
    assert_eq!(outbox.lock().spare.as_ref().map(BytesMut::capacity), Some(IDLE_KEPT_ENCODED));
    let outbox = keeps_a_spare_of(IDLE_KEPT_ENCODED + 1).expect("kept");
    outbox.release_idle_buffers();
    assert!(outbox.lock().spare.is_none(), "let go of");
}

#[test]
fn a_closed_outbox_lets_go_of_its_buffers() {
    let outbox = Outbox::new(16, 1 << 20, 16, 1 << 24);
    assert!(outbox.try_push_frame(&Frame::Data(bytes::Bytes::from_static(b"queued")), false).is_ok());
    let mut cx = Context::from_waker(Waker::noop());
    let mut chunks = VecDeque::new();
    assert!(outbox.poll_take(&mut cx, &mut Vec::new(), &mut chunks, &mut None).is_ready());
    // The writer gives the emptied buffer back; the outbox keeps it...
    let emptied = || Some(BytesMut::with_capacity(4096));
    let taken = outbox.poll_take(&mut cx, &mut Vec::new(), &mut VecDeque::new(), &mut emptied());
    assert!(taken.is_pending());
    assert_eq!(outbox.lock().spare.as_ref().map(BytesMut::capacity), Some(4096));
    outbox.lock().direct_buf = BytesMut::with_capacity(4096);
    // ...until the connection ends.
    assert!(outbox.try_push_ack(MsgId::from_bytes([1; 16])).is_ok());
    let mut acks = Vec::new();
    assert!(outbox.close_chunks(&mut acks).is_empty());
    assert_eq!(acks, [MsgId::from_bytes([1; 16])], "the ACK not sent is handed out");
    let state = outbox.lock();
    assert_eq!((state.spare.is_none(), state.direct_buf.capacity(), state.acks.capacity()), (true, 0, 0));
    drop(state);
    // A buffer given back after the end is not kept either.
    let taken = outbox.poll_take(&mut cx, &mut Vec::new(), &mut VecDeque::new(), &mut emptied());
    assert_eq!(taken, Poll::Ready(false));
    assert!(outbox.lock().spare.is_none());
}

/// A stream that takes every byte it is given.
struct TakesAll;

impl WriteNow for TakesAll {
    fn write_now(&self, bytes: &[u8]) -> crate::direct::WroteNow {
        crate::direct::WroteNow { bytes: bytes.len(), flushed: true }
    }
}

/// A sender writes a small frame itself with an encode buffer of
/// `capacity` bytes (grown by an earlier, larger write); whether the
/// outbox kept that buffer for the next one.
fn keeps_a_direct_buffer_of(capacity: usize) -> bool {
    let id = smartsock_framing::PeerId::from_bytes([5; 16]);
    let counters = PeerCounters::new(id, "x".into(), crate::Side::Connect, Default::default());
    let direct = Direct { stream: Box::new(TakesAll), counters: std::sync::Arc::new(counters) };
    let outbox = Outbox::new(16, 1 << 20, 16, 1 << 24).with_direct(direct);
    assert!(outbox.poll_queued(&mut Context::from_waker(Waker::noop())).is_pending());
    outbox.arm_direct();
    outbox.lock().direct_buf = BytesMut::with_capacity(capacity);
    assert_eq!(outbox.lock().direct_buf.capacity(), capacity);
    outbox.try_push_frame(&Frame::Data(vec![1].into()), true).unwrap();
    assert_eq!(outbox.direct_written(), 1, "written by the sender");
    // Clearing keeps the capacity and a 1-byte frame needs no more: any
    // other capacity means the buffer was let go.
    outbox.lock().direct_buf.capacity() == capacity
}

#[test]
fn a_senders_encode_buffer_is_kept_up_to_its_bound_and_not_past_it() {
    assert!(keeps_a_direct_buffer_of(MAX_KEPT_DIRECT));
    assert!(!keeps_a_direct_buffer_of(MAX_KEPT_DIRECT + 1));
}
