use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use super::*;

/// Hands the outbox an emptied encode buffer of `capacity` bytes, as the
/// writer does when it takes a batch; whether the outbox kept it.
fn keeps_a_spare_of(capacity: usize) -> bool {
    let outbox = Outbox::new(16, 1 << 20, 16, 1 << 24);
    let spare = BytesMut::with_capacity(capacity);
    assert_eq!(spare.capacity(), capacity);
    let mut cx = Context::from_waker(Waker::noop());
    let taken = outbox.poll_take(&mut cx, &mut Vec::new(), &mut VecDeque::new(), &mut Some(spare));
    assert!(taken.is_pending(), "nothing was queued");
    outbox.lock().spare.is_some()
}

#[test]
fn an_emptied_encode_buffer_is_kept_up_to_its_bound_and_not_past_it() {
    assert!(keeps_a_spare_of(MAX_KEPT_ENCODED));
    assert!(!keeps_a_spare_of(MAX_KEPT_ENCODED + 1));
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

/// A stream that takes at most `per_write` bytes a write, and keeps them.
struct Takes {
    per_write: usize,
    wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl WriteNow for Takes {
    fn write_now(&self, bytes: &[u8]) -> crate::direct::WroteNow {
        let n = bytes.len().min(self.per_write);
        self.wire.lock().unwrap().extend_from_slice(&bytes[..n]);
        crate::direct::WroteNow { bytes: n, flushed: true }
    }
}

/// An outbox for `capacity` frames of at most 1 MiB of payload, whose
/// senders may write a full queue to a stream taking `per_write` bytes a
/// write, before its writer first looks at it; and the wire.
fn new_full_queue_outbox(
    capacity: usize,
    per_write: usize,
) -> (Outbox, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let wire = std::sync::Arc::default();
    let id = smartsock_framing::PeerId::from_bytes([5; 16]);
    let counters = PeerCounters::new(id, "x".into(), crate::Side::Connect, Default::default());
    let stream = Takes { per_write, wire: std::sync::Arc::clone(&wire) };
    let direct = Direct { stream: Box::new(stream), counters: std::sync::Arc::new(counters) };
    (Outbox::new(capacity, 1 << 20, 16, 1 << 24).with_direct(direct).senders_write_full_queue(), wire)
}

/// As [`new_full_queue_outbox`], with its writer woken and not yet run (as
/// after the first push to an idle writer).
fn full_queue_outbox(
    capacity: usize,
    per_write: usize,
) -> (Outbox, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let (outbox, wire) = new_full_queue_outbox(capacity, per_write);
    assert!(outbox.poll_queued(&mut Context::from_waker(Waker::noop())).is_pending(), "the writer parks");
    (outbox, wire)
}

/// Messages the outbox's peer counted as written.
fn counted(outbox: &Outbox) -> u64 {
    outbox.direct.as_ref().unwrap().counters.snapshot(0, None).traffic.messages_out
}

/// A DATA frame of `len` bytes, each `n`.
fn data(n: u8, len: usize) -> Frame {
    Frame::Data(bytes::Bytes::from(vec![n; len]))
}

fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut run = BytesMut::new();
    for frame in frames {
        frame.encode_into(&mut run);
    }
    run.to_vec()
}

/// What the writer takes now, as bytes on the wire.
fn writer_takes(outbox: &Outbox) -> Vec<u8> {
    let mut chunks = VecDeque::new();
    let taken =
        outbox.poll_take(&mut Context::from_waker(Waker::noop()), &mut Vec::new(), &mut chunks, &mut None);
    assert_eq!(taken, Poll::Ready(true));
    let mut wire = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Encoded { bytes, .. } | Chunk::Tail { bytes, .. } => wire.extend_from_slice(&bytes),
            Chunk::Own(_) => unreachable!("small frames only"),
        }
    }
    wire
}

#[test]
fn a_sender_that_finds_the_outbox_full_writes_the_queue_itself_then_queues_its_frame() {
    let (outbox, wire) = full_queue_outbox(4, usize::MAX);
    let frames: Vec<Frame> = (1..=5).map(|n| data(n, 3)).collect();
    for frame in &frames[..4] {
        outbox.try_push_frame(frame, true).unwrap();
    }
    assert!(wire.lock().unwrap().is_empty(), "the writer's to batch while there is room");
    outbox.try_push_frame(&frames[4], true).unwrap();
    assert_eq!(*wire.lock().unwrap(), encoded(&frames[..4]));
    assert_eq!((outbox.direct_written(), outbox.len()), (4, 1));
    assert!(outbox.last_direct_write().is_some(), "the heartbeat waits after it");
    assert_eq!(writer_takes(&outbox), encoded(&frames[4..]));
}

#[test]
fn a_sender_leaves_the_queue_to_a_writer_that_holds_a_batch() {
    let (outbox, wire) = full_queue_outbox(2, usize::MAX);
    let frames: Vec<Frame> = (1..=5).map(|n| data(n, 3)).collect();
    outbox.try_push_frame(&frames[0], true).unwrap();
    outbox.try_push_frame(&frames[1], true).unwrap();
    // The writer takes them and is writing them.
    assert_eq!(writer_takes(&outbox), encoded(&frames[..2]));
    outbox.try_push_frame(&frames[2], true).unwrap();
    outbox.try_push_frame(&frames[3], true).unwrap();
    assert_eq!(outbox.try_push_frame(&frames[4], true), Err(NotQueued::Full));
    assert!(wire.lock().unwrap().is_empty(), "two writes at once would interleave");
    // Back for the next batch, the writer has finished the last: a sender
    // that finds the outbox full again may write it.
    assert_eq!(writer_takes(&outbox), encoded(&frames[2..4]));
    assert!(outbox.poll_queued(&mut Context::from_waker(Waker::noop())).is_pending());
    outbox.try_push_frame(&frames[2], true).unwrap();
    outbox.try_push_frame(&frames[3], true).unwrap();
    outbox.try_push_frame(&frames[4], true).unwrap();
    assert_eq!(*wire.lock().unwrap(), encoded(&frames[2..4]));
}

#[test]
fn a_frame_the_stream_took_part_of_stays_at_the_front_as_a_tail() {
    // Frames of 15 bytes on the wire: the stream takes the first and 5
    // bytes of the second.
    let (outbox, wire) = full_queue_outbox(3, 20);
    let frames: Vec<Frame> = (1..=4).map(|n| data(n, 10)).collect();
    for frame in &frames[..3] {
        outbox.try_push_frame(frame, true).unwrap();
    }
    outbox.try_push_frame(&frames[3], true).unwrap();
    assert_eq!((outbox.direct_written(), counted(&outbox)), (1, 1), "one frame went whole");
    let queued = outbox.queued();
    assert_eq!((queued.frames, queued.bytes), (3, 30), "the cut frame still counts");
    let mut all = wire.lock().unwrap().clone();
    all.extend(writer_takes(&outbox));
    assert_eq!(all, encoded(&frames), "every byte once, in order");
}

#[test]
fn a_cut_frame_is_lost_at_close_and_the_whole_ones_after_it_come_back() {
    let (outbox, _wire) = full_queue_outbox(3, 20);
    let frames: Vec<Frame> = (1..=4).map(|n| data(n, 10)).collect();
    for frame in &frames {
        outbox.try_push_frame(frame, true).unwrap();
    }
    let back: Vec<u8> = outbox.close(&mut Vec::new()).iter().map(|item| item.frame.payload()[0]).collect();
    assert_eq!(back, [3, 4], "frame 1 was written, frame 2 cut in the write");
}

#[test]
fn a_write_that_ends_on_a_frame_boundary_leaves_no_tail() {
    let (outbox, wire) = full_queue_outbox(3, 30);
    let frames: Vec<Frame> = (1..=4).map(|n| data(n, 10)).collect();
    for frame in &frames {
        outbox.try_push_frame(frame, true).unwrap();
    }
    assert_eq!(*wire.lock().unwrap(), encoded(&frames[..2]));
    assert_eq!((outbox.direct_written(), outbox.len()), (2, 2));
    let back: Vec<u8> = outbox.close(&mut Vec::new()).iter().map(|item| item.frame.payload()[0]).collect();
    assert_eq!(back, [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_sender_in_a_task_waits_for_the_writer_as_before() {
    let (outbox, wire) = full_queue_outbox(1, usize::MAX);
    let outbox = std::sync::Arc::new(outbox);
    let in_task = std::sync::Arc::clone(&outbox);
    let pushed = tokio::spawn(async move {
        in_task.try_push_frame(&data(1, 3), true).unwrap();
        in_task.try_push_frame(&data(2, 3), true)
    });
    assert_eq!(pushed.await.unwrap(), Err(NotQueued::Full));
    assert!(wire.lock().unwrap().is_empty());
    // Outside any task (here, the test's `block_on`), it writes.
    outbox.try_push_frame(&data(2, 3), true).unwrap();
    assert_eq!(*wire.lock().unwrap(), encoded(&[data(1, 3)]));
}

#[test]
fn a_new_outbox_is_the_writers_until_it_first_looks() {
    // A new connection's writer sends the HELLO before anything else.
    let (outbox, wire) = new_full_queue_outbox(2, usize::MAX);
    outbox.try_push_frame(&data(1, 3), true).unwrap();
    outbox.try_push_frame(&data(2, 3), true).unwrap();
    assert_eq!(outbox.try_push_frame(&data(3, 3), true), Err(NotQueued::Full));
    assert!(wire.lock().unwrap().is_empty());
}

#[test]
fn no_sender_writes_a_full_queue_ahead_of_acks_or_a_heartbeat() {
    let (outbox, wire) = full_queue_outbox(1, usize::MAX);
    outbox.try_push_frame(&data(1, 3), true).unwrap();
    outbox.try_push_ack(MsgId::from_bytes([9; 16])).unwrap();
    assert_eq!(outbox.try_push_frame(&data(2, 3), true), Err(NotQueued::Full), "the ACK goes first");
    let (mut acks, mut chunks) = (Vec::new(), VecDeque::new());
    assert!(outbox.take_for_heartbeat(&mut acks, &mut chunks));
    outbox.try_push_frame(&data(2, 3), true).unwrap();
    assert_eq!(outbox.try_push_frame(&data(3, 3), true), Err(NotQueued::Full), "the heartbeat goes first");
    assert!(wire.lock().unwrap().is_empty());
}

#[test]
fn a_sender_writes_at_most_max_sender_write_of_a_full_queue_at_a_time() {
    // 100 frames of 1,005 bytes on the wire: 65 whole in the first 64 KiB,
    // and 211 bytes of the 66th.
    let (outbox, wire) = full_queue_outbox(100, usize::MAX);
    let frames: Vec<Frame> = (0..=100).map(|n| data(n, 1000)).collect();
    for frame in &frames {
        outbox.try_push_frame(frame, true).unwrap();
    }
    assert_eq!(wire.lock().unwrap().len(), MAX_SENDER_WRITE);
    assert_eq!((outbox.direct_written(), counted(&outbox)), (65, 65));
    let queued = outbox.queued();
    assert_eq!((queued.frames, queued.bytes), (36, 36_000), "the cut frame, 34 whole ones and the new one");
    let mut all = wire.lock().unwrap().clone();
    all.extend(writer_takes(&outbox));
    assert_eq!(all, encoded(&frames));
}
