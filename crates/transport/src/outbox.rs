//! [`Outbox`]: the bounded queue of frames between the senders of one peer
//! and its connection's writer.
//!
//! Senders push under a short lock (no await, no allocation once the buffers
//! have grown) and wake the writer only when it is parked on an empty queue;
//! the writer takes everything queued at once by swapping buffers, so its
//! cost is one lock per batch, not per frame. Bounded in frames and in
//! payload bytes.
//!
//! A small frame is encoded into the outbox as it is pushed, by the sender:
//! the writer then has one buffer to write for a whole run of them, and the
//! sender's payload is copied and let go on the sender's own thread (a
//! payload freed where it was allocated is the cheap case for the
//! allocator). A large payload is queued as it is, to be written from its
//! own buffer (vectored write, no copy). What was never written is decoded
//! back into frames when the connection ends, to be routed again.
//!
//! A sender may also write a small frame to the stream itself, under the
//! outbox's lock, when nothing is queued and the writer is parked idle (a
//! reply, the next request: no hand-off to the writer's task). It does so
//! once per read that brought messages from the peer (the reader arms it),
//! so that a stream of sends still goes out in the writer's batches, not a
//! write each.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use smartsock_framing::{Frame, MsgId};
use tracing::warn;

use crate::chunk::{Chunk, decode, is_message};
use crate::direct::WriteNow;
use crate::error::{NotQueued, TrySendError};
use crate::peer::Outgoing;
use crate::room::RoomSignal;
use crate::stats::PeerCounters;
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering, lock};

/// Payloads at least this long are queued as they are and written from
/// their own buffer (vectored write) instead of being copied.
pub(crate) const VECTORED_MIN: usize = 16 * 1024;

/// An emptied encode buffer larger than this is not kept for reuse: one
/// burst of big frames must not pin its buffer for the connection's life
/// (and an idle connection keeps none larger than [`IDLE_KEPT_ENCODED`]).
///
/// It is what a full outbox at the default marks (`config.rs`) can need,
/// doubled for the buffer's growth: 1 MiB of payload, one frame past the
/// mark (below [`VECTORED_MIN`]), and a header for each of 4096 frames (at
/// most [`MAX_HEADER_LEN`](smartsock_framing::MAX_HEADER_LEN)), so about
/// 2.2 MiB. A bound of 1 MiB freed the buffer and grew it again for every
/// batch of payloads over 251 bytes. (An outbox with larger marks frees
/// its larger buffers too; at a byte mark of 8 MiB, keeping them made no
/// difference to 1 KiB messages in paired runs: 0.99 and 1.03.)
const MAX_KEPT_ENCODED: usize = 2
    * (crate::DEFAULT_OUTBOX_BYTES
        + VECTORED_MIN
        + crate::DEFAULT_OUTBOX_CAPACITY * smartsock_framing::MAX_HEADER_LEN);

/// The largest encode buffer kept once the connection has been idle for a
/// heartbeat interval: a burst's buffer (up to [`MAX_KEPT_ENCODED`]) is not
/// pinned while nothing is sent.
pub(crate) const IDLE_KEPT_ENCODED: usize = 64 * 1024;

/// `buffer`, taken out if its capacity is past `bound` (for the caller to
/// free, outside any lock).
pub(crate) fn take_if_larger(buffer: &mut Option<BytesMut>, bound: usize) -> Option<BytesMut> {
    if buffer.as_ref().is_some_and(|buf| buf.capacity() > bound) { buffer.take() } else { None }
}

/// A sender's encode buffer for its own writes larger than this is not kept.
const MAX_KEPT_DIRECT: usize = 4 * 1024;

// Aligned so that the reference counts of the `Arc` it lives in (touched by
// the reader for every message's ACK handle) share no cache line with its
// lock (taken by senders, the writer and the ACKs).
#[repr(align(128))]
pub(crate) struct Outbox {
    state: Mutex<State>,
    max_frames: usize,
    max_bytes: usize,
    max_acks: usize,
    max_frame_length: usize,
    /// Mirrors `State::closed` for lock-free checks.
    closed: AtomicBool,
    /// The stream, for a sender to write a frame itself (see the module's
    /// docs); `None` where only the writer may write (TLS, WebSocket, a
    /// stream of the user's).
    direct: Option<Direct>,
    /// A sender may write the next frame itself: set by the reader when a
    /// message arrives, cleared by the sender that does (so not set before
    /// the first message: a sender's first frames are the writer's to
    /// batch, and the outbox's capacity is what they can fill).
    direct_armed: AtomicBool,
}

/// A stream senders may write to, and the counters their writes count in.
pub(crate) struct Direct {
    pub(crate) stream: Box<dyn WriteNow>,
    pub(crate) counters: std::sync::Arc<PeerCounters>,
}

struct State {
    chunks: VecDeque<Chunk>,
    /// Frames in `chunks`.
    frames: usize,
    /// Payload bytes in `chunks`.
    bytes: usize,
    /// ACKs to send, ahead of `chunks`: an ACK must not wait behind, or be
    /// refused for, the data this socket sends the same peer.
    acks: VecDeque<MsgId>,
    closed: bool,
    /// The writer, parked on an empty outbox.
    writer: Option<Waker>,
    /// An emptied encode buffer the writer gave back, for the next run of
    /// small frames.
    spare: Option<BytesMut>,
    /// A sender's write left the stream holding bytes back: the writer
    /// must flush it.
    flush_due: bool,
    /// Messages senders wrote themselves.
    direct_written: u64,
    /// When a sender last wrote to the stream itself: the writer's
    /// heartbeat waits an interval after it, as after its own writes.
    direct_at: Option<tokio::time::Instant>,
    /// Where a sender encodes the frame it writes itself.
    direct_buf: BytesMut,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize, max_acks: usize, max_frame_length: usize) -> Self {
        Self {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                frames: 0,
                bytes: 0,
                acks: VecDeque::new(),
                closed: false,
                writer: None,
                spare: None,
                flush_due: false,
                direct_written: 0,
                direct_at: None,
                direct_buf: BytesMut::new(),
            }),
            max_frames,
            max_bytes,
            max_acks,
            max_frame_length,
            closed: AtomicBool::new(false),
            direct: None,
            direct_armed: AtomicBool::new(false),
        }
    }

    /// Lets senders write a small frame to `direct` themselves when the
    /// writer is idle and nothing is queued. Only for a stream that a write
    /// without a waker cannot upset (a socket or pipe): not TLS or
    /// WebSocket, whose writes also drive their own state.
    pub(crate) fn with_direct(mut self, direct: Direct) -> Self {
        self.direct = Some(direct);
        self
    }

    /// A message came from the peer: the next frame sent may be written by
    /// its sender (a reply). Cheap when already armed (no store).
    pub(crate) fn arm_direct(&self) {
        if self.direct.is_some() && !self.direct_armed.load(Ordering::Relaxed) {
            self.direct_armed.store(true, Ordering::Relaxed);
        }
    }

    /// Messages senders wrote to the stream themselves.
    pub(crate) fn direct_written(&self) -> u64 {
        self.lock().direct_written
    }

    /// When a sender last wrote to the stream itself (any part of a frame).
    pub(crate) fn last_direct_write(&self) -> Option<tokio::time::Instant> {
        self.lock().direct_at
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues `item` if the outbox is open and below both marks; hands it
    /// back otherwise.
    pub(crate) fn try_push(&self, item: Outgoing) -> Result<(), TrySendError> {
        match self.try_push_frame(&item.frame, item.reroutable) {
            Ok(()) => Ok(()),
            Err(NotQueued::Full) => Err(TrySendError::Full(item)),
            Err(NotQueued::Closed) => Err(TrySendError::Closed(item)),
        }
    }

    /// Queues a copy of `frame` (a small one encoded, a large one sharing its
    /// payload) if the outbox is open and below both marks. A frame is taken
    /// while fewer than `max_bytes` payload bytes are queued, so one large
    /// frame may pass the byte mark; none is taken after it.
    pub(crate) fn try_push_frame(&self, frame: &Frame, reroutable: bool) -> Result<(), NotQueued> {
        let payload = frame.payload().len();
        let mut state = self.lock();
        if state.closed {
            return Err(NotQueued::Closed);
        }
        if state.frames >= self.max_frames || state.bytes >= self.max_bytes {
            return Err(NotQueued::Full);
        }
        if frame.envelope_len() > self.max_frame_length {
            // The layers above check sizes before queueing; this guard keeps
            // a frame the peer would refuse from ever reaching it.
            drop(state);
            warn!(len = frame.envelope_len(), "dropping a frame over the maximum frame length");
            return Ok(());
        }
        if let Some(direct) = self.direct_now(&state, payload) {
            let (written, wake_writer) = Self::write_direct(&mut state, direct, frame, reroutable);
            let writer = if wake_writer { state.writer.take() } else { None };
            drop(state);
            direct.counters.wrote(u64::from(written), payload as u64);
            if let Some(writer) = writer {
                writer.wake();
            }
            return Ok(());
        }
        state.frames += 1;
        state.bytes += payload;
        if payload >= VECTORED_MIN {
            state.chunks.push_back(Chunk::Own(Outgoing { frame: frame.clone(), reroutable }));
        } else {
            let state = &mut *state;
            let open = matches!(state.chunks.back(), Some(Chunk::Encoded { reroutable: same, .. }) if *same == reroutable);
            if !open {
                let bytes = state.spare.take().unwrap_or_default();
                state.chunks.push_back(Chunk::Encoded { bytes, messages: 0, payload: 0, reroutable });
            }
            if let Some(Chunk::Encoded { bytes, messages, payload: chunk_payload, .. }) =
                state.chunks.back_mut()
            {
                frame.encode_into(bytes);
                if is_message(frame) {
                    *messages += 1;
                    *chunk_payload += payload;
                }
            }
        }
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
    }

    /// Whether the writer is parked on an empty outbox, with nothing of a
    /// sender's write to flush: a sender's frame may go out now, in order.
    fn writer_idle(state: &State) -> bool {
        state.writer.is_some() && !state.flush_due && state.chunks.is_empty() && state.acks.is_empty()
    }

    /// The stream, if a sender's frame of `payload` bytes may be written to
    /// it now: armed, small, and the writer idle (disarms it).
    fn direct_now(&self, state: &State, payload: usize) -> Option<&Direct> {
        let direct = self.direct.as_ref()?;
        if payload >= VECTORED_MIN || !Self::writer_idle(state) || !self.direct_armed.load(Ordering::Relaxed)
        {
            return None;
        }
        self.direct_armed.store(false, Ordering::Relaxed);
        Some(direct)
    }

    /// A sender writes `frame` to the stream itself (the writer idle, the
    /// outbox empty, the lock held: nothing can come between). Returns the
    /// messages written whole (0 or 1), and whether the writer must be
    /// woken: for what the stream did not take, queued (the whole frame,
    /// or its tail), or for a flush.
    fn write_direct(state: &mut State, direct: &Direct, frame: &Frame, reroutable: bool) -> (u32, bool) {
        let messages = u32::from(is_message(frame));
        let payload = frame.payload().len();
        let buf = &mut state.direct_buf;
        buf.clear();
        frame.encode_into(buf);
        let wrote = direct.stream.write_now(buf);
        state.flush_due = !wrote.flushed;
        if wrote.bytes > 0 {
            state.direct_at = Some(tokio::time::Instant::now());
        }
        if wrote.bytes == buf.len() {
            if buf.capacity() > MAX_KEPT_DIRECT {
                // One large reply must not pin its buffer for the
                // connection's life.
                *buf = BytesMut::new();
            }
            state.direct_written += u64::from(messages);
            return (messages, state.flush_due);
        }
        let mut bytes = std::mem::take(buf);
        state.frames += 1;
        state.bytes += payload;
        state.chunks.push_back(if wrote.bytes == 0 {
            Chunk::Encoded { bytes, messages, payload, reroutable }
        } else {
            bytes.advance(wrote.bytes);
            Chunk::Tail { bytes, messages, payload }
        });
        (0, true)
    }

    /// Queues an ACK on the ACK lane; false if the lane is full or closed.
    pub(crate) fn try_push_ack(&self, id: MsgId) -> Result<(), crate::AckError> {
        let mut state = self.lock();
        if state.closed {
            return Err(crate::AckError::Disconnected);
        }
        if state.acks.len() >= self.max_acks {
            return Err(crate::AckError::QueueFull);
        }
        state.acks.push_back(id);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
    }

    /// Whether a frame would be taken now (open, below both marks).
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        !state.closed && state.frames < self.max_frames && state.bytes < self.max_bytes
    }

    /// Frames that fit before the frame mark (0 when closed).
    pub(crate) fn room(&self) -> usize {
        let state = self.lock();
        if state.closed || state.bytes >= self.max_bytes { 0 } else { self.max_frames - state.frames }
    }

    /// Frames queued now.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames
    }

    /// Frames and their payload bytes waiting now, and whether that is at
    /// either mark (a sender would find the outbox full): for a writer
    /// deciding whether to wait for more before it takes them.
    pub(crate) fn queued(&self) -> Queued {
        let state = self.lock();
        Queued {
            frames: state.frames,
            bytes: state.bytes,
            at_mark: state.frames >= self.max_frames || state.bytes >= self.max_bytes,
        }
    }

    /// For the writer: ready once something waits to be taken (`true`), or
    /// the outbox is closed and empty (`false`); parks the writer on `cx`
    /// otherwise, as [`poll_take`](Outbox::poll_take) does.
    pub(crate) fn poll_queued(&self, cx: &mut Context<'_>) -> Poll<bool> {
        ready_or_park(&mut self.lock(), cx)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// For the writer: appends everything queued to `acks` and `chunks`
    /// (swapping queues when `chunks` is empty, so that a batch costs no
    /// copy), or parks the writer on `cx` if nothing is queued. Ready with
    /// `false` once the outbox is closed and empty. `spare`, an emptied
    /// encode buffer of the writer's, is kept for reuse.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        acks: &mut Vec<MsgId>,
        chunks: &mut VecDeque<Chunk>,
        spare: &mut Option<BytesMut>,
    ) -> Poll<bool> {
        // Too large to keep: freed here, not under the lock.
        drop(take_if_larger(spare, MAX_KEPT_ENCODED));
        let mut state = self.lock();
        if state.spare.is_none() && !state.closed {
            state.spare = spare.take();
        }
        if let waiting @ (Poll::Pending | Poll::Ready(false)) = ready_or_park(&mut state, cx) {
            return waiting;
        }
        take_all(&mut state, acks, chunks);
        Poll::Ready(true)
    }

    /// For the writer, idle for a heartbeat interval: lets go of the
    /// encode buffer kept if it is larger than [`IDLE_KEPT_ENCODED`].
    pub(crate) fn release_idle_buffers(&self) {
        let mut state = self.lock();
        let released = take_if_larger(&mut state.spare, IDLE_KEPT_ENCODED);
        drop(state);
        // Freed here, not under the lock.
        drop(released);
    }

    /// The capacity of the encode buffer kept for reuse (0 if none).
    #[cfg(test)]
    pub(crate) fn kept_capacity(&self) -> usize {
        self.lock().spare.as_ref().map_or(0, BytesMut::capacity)
    }

    /// For the writer, about to write a heartbeat: from now until it parks
    /// again no sender writes to the stream, and whatever is queued (the
    /// tail of a sender's write first) is appended to `acks` and `chunks`,
    /// to go out with it. Whether anything was taken.
    pub(crate) fn take_for_heartbeat(&self, acks: &mut Vec<MsgId>, chunks: &mut VecDeque<Chunk>) -> bool {
        let mut state = self.lock();
        state.writer = None;
        let queued = !state.acks.is_empty() || !state.chunks.is_empty();
        take_all(&mut state, acks, chunks);
        queued
    }

    /// The writer's step: [`poll_take`](Outbox::poll_take), then, after a
    /// batch was taken, wake every sender waiting for room. Every drain
    /// signals, whatever its size: room frees up in small drains too. (The
    /// loom model runs this very function.)
    pub(crate) fn poll_drain(
        &self,
        cx: &mut Context<'_>,
        room: &RoomSignal,
        acks: &mut Vec<MsgId>,
        chunks: &mut VecDeque<Chunk>,
        spare: &mut Option<BytesMut>,
    ) -> Poll<bool> {
        let taken = self.poll_take(cx, acks, chunks, spare);
        if let Poll::Ready(true) = taken {
            room.notify();
        }
        taken
    }

    /// Closes the outbox and returns the frames still queued (appending the
    /// ACKs still queued to `acks`): later pushes are handed back as `Closed`.
    pub(crate) fn close(&self, acks: &mut Vec<MsgId>) -> Vec<Outgoing> {
        decode(self.close_chunks(acks))
    }

    /// Closes the outbox (later pushes are handed back as `Closed`) and
    /// returns what was queued, as the writer takes it; ACKs still queued
    /// are appended to `acks`.
    pub(crate) fn close_chunks(&self, acks: &mut Vec<MsgId>) -> VecDeque<Chunk> {
        let mut state = self.lock();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        state.frames = 0;
        state.bytes = 0;
        // Nothing is queued from now on: the queues and buffers go with
        // their contents, for whoever still holds the outbox (an ACK handle,
        // a sender's peer table).
        acks.extend(std::mem::take(&mut state.acks));
        let writer = state.writer.take();
        let chunks = std::mem::take(&mut state.chunks);
        state.spare = None;
        state.direct_buf = BytesMut::new();
        drop(state);
        // A parked writer learns that it is over.
        if let Some(writer) = writer {
            writer.wake();
        }
        chunks
    }
}

/// What waits in an outbox: see [`Outbox::queued`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
    pub(crate) at_mark: bool,
}

/// Ready if something waits to be taken (`true`) or the outbox is closed
/// and empty (`false`); else the writer's waker is registered, under the
/// lock, so that the next push wakes it.
fn ready_or_park(state: &mut State, cx: &mut Context<'_>) -> Poll<bool> {
    if !state.acks.is_empty() || !state.chunks.is_empty() || state.flush_due {
        // Not parked any more: no sender writes to the stream meanwhile.
        state.writer = None;
        return Poll::Ready(true);
    }
    if state.closed {
        return Poll::Ready(false);
    }
    match &mut state.writer {
        Some(waker) => waker.clone_from(cx.waker()),
        slot @ None => *slot = Some(cx.waker().clone()),
    }
    Poll::Pending
}

/// Moves everything queued to the writer's `acks` and `chunks` (swapping
/// queues when `chunks` is empty, so that a batch costs no copy); the flush
/// a sender left due is the writer's now, done after its write.
fn take_all(state: &mut State, acks: &mut Vec<MsgId>, chunks: &mut VecDeque<Chunk>) {
    state.flush_due = false;
    acks.extend(state.acks.drain(..));
    if chunks.is_empty() {
        std::mem::swap(chunks, &mut state.chunks);
    } else {
        chunks.extend(state.chunks.drain(..));
    }
    state.frames = 0;
    state.bytes = 0;
}

#[cfg(test)]
mod tests;
