//! [`Outbox`]: the bounded queue of frames between the senders of one peer
//! and its connection's writer.
//!
//! Senders push under a short lock (no await, no allocation once the queue
//! has grown) and wake the writer only when it is parked on an empty queue;
//! the writer takes everything queued at once by swapping buffers, so its
//! cost is one lock per batch, not per frame. Bounded in frames and in
//! payload bytes.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use smartsock_framing::MsgId;

use crate::peer::Outgoing;
use crate::room::RoomSignal;
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering, lock};

/// Why [`PeerHandle::try_send`](crate::PeerHandle::try_send) handed a frame back.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrySendError {
    /// The outbox is at its mark (in frames or in bytes): the frame is handed back.
    Full(Outgoing),
    /// The connection has ended: the frame is handed back.
    Closed(Outgoing),
}

impl TrySendError {
    /// The frame that was not queued.
    pub fn into_inner(self) -> Outgoing {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the peer's outbox is full"),
            Self::Closed(_) => f.write_str("the peer's connection has ended"),
        }
    }
}

impl std::error::Error for TrySendError {}

pub(crate) struct Outbox {
    state: Mutex<State>,
    max_frames: usize,
    max_bytes: usize,
    max_acks: usize,
    /// Mirrors `State::closed` for lock-free checks.
    closed: AtomicBool,
}

struct State {
    frames: VecDeque<Outgoing>,
    /// Payload bytes in `frames`.
    bytes: usize,
    /// ACKs to send, ahead of `frames`: an ACK must not wait behind, or be
    /// refused for, the data this socket sends the same peer.
    acks: VecDeque<MsgId>,
    closed: bool,
    /// The writer, parked on an empty outbox.
    writer: Option<Waker>,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize, max_acks: usize) -> Self {
        Self {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                acks: VecDeque::new(),
                closed: false,
                writer: None,
            }),
            max_frames,
            max_bytes,
            max_acks,
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues `item` if the outbox is open and below both marks. A frame is
    /// taken while fewer than `max_bytes` payload bytes are queued, so one
    /// large frame may pass the byte mark; none is taken after it.
    pub(crate) fn try_push(&self, item: Outgoing) -> Result<(), TrySendError> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.frames.len() >= self.max_frames || state.bytes >= self.max_bytes {
            return Err(TrySendError::Full(item));
        }
        state.bytes += item.frame.payload().len();
        state.frames.push_back(item);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
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
        !state.closed && state.frames.len() < self.max_frames && state.bytes < self.max_bytes
    }

    /// Frames that fit before the frame mark (0 when closed).
    pub(crate) fn room(&self) -> usize {
        let state = self.lock();
        if state.closed || state.bytes >= self.max_bytes { 0 } else { self.max_frames - state.frames.len() }
    }

    /// Frames queued now.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// For the writer: appends everything queued to `acks` and `frames`
    /// (swapping buffers when `frames` is empty, so that a batch costs no
    /// copy), or parks the writer on `cx` if nothing is queued. Ready with
    /// `false` once the outbox is closed and empty.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        acks: &mut Vec<MsgId>,
        frames: &mut VecDeque<Outgoing>,
    ) -> Poll<bool> {
        let mut state = self.lock();
        if state.acks.is_empty() && state.frames.is_empty() {
            if state.closed {
                return Poll::Ready(false);
            }
            match &mut state.writer {
                Some(waker) => waker.clone_from(cx.waker()),
                slot @ None => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        acks.extend(state.acks.drain(..));
        if frames.is_empty() {
            std::mem::swap(frames, &mut state.frames);
        } else {
            frames.extend(state.frames.drain(..));
        }
        state.bytes = 0;
        Poll::Ready(true)
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
        frames: &mut VecDeque<Outgoing>,
    ) -> Poll<bool> {
        let taken = self.poll_take(cx, acks, frames);
        if let Poll::Ready(true) = taken {
            room.notify();
        }
        taken
    }

    /// Closes the outbox and returns the frames still queued (appending the
    /// ACKs still queued to `acks`): later pushes are handed back as `Closed`.
    pub(crate) fn close(&self, acks: &mut Vec<MsgId>) -> Vec<Outgoing> {
        let mut state = self.lock();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        state.bytes = 0;
        acks.extend(state.acks.drain(..));
        let writer = state.writer.take();
        let queued = state.frames.drain(..).collect();
        drop(state);
        // A parked writer learns that it is over.
        if let Some(writer) = writer {
            writer.wake();
        }
        queued
    }
}
