//! [`Inbound`]: the one bounded queue of received messages of a transport.
//!
//! Readers hand over every message decoded from one read as a batch (one
//! lock, one wake-up); the application takes them one at a time. The queue
//! is bounded in messages and in payload bytes; a reader that finds it full
//! stops reading (TCP then pushes back on the peer) and is woken once the
//! application has made room.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::peer::Incoming;
use crate::sync::{ShortLock, ShortLockGuard};

/// The receiving end of a transport's inbound queue: DATA and DATA_REQ
/// payloads from every peer, in arrival order per peer.
///
/// Cheap to clone; clones take from the same queue, so several tasks can
/// receive at once (each message goes to one of them).
#[derive(Clone)]
pub struct Inbound {
    shared: Arc<Shared>,
}

/// Why [`Inbound::recv`] returned nothing: the transport closed and every
/// message received before was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inbound queue is closed and empty")]
pub struct InboundClosed;

/// Why [`Inbound::try_recv`] returned nothing.
// A whole word: in a `Result` beside a message it sits in the message's
// room, and as a byte it split that room at an odd offset, so that every
// received message was copied in overlapping unaligned pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[repr(u64)]
pub enum TryRecvError {
    /// Nothing is queued now.
    #[error("no message is queued")]
    Empty,
    /// Nothing is queued, and nothing will be: the transport closed.
    #[error("the inbound queue is closed and empty")]
    Closed,
}

struct Shared {
    state: ShortLock<State>,
    max_messages: usize,
    max_bytes: usize,
    /// Receivers waiting for a message.
    readable: Notify,
    /// Readers (connections) waiting for room.
    writable: Notify,
}

struct State {
    queue: VecDeque<Incoming>,
    bytes: usize,
    closed: bool,
    /// A reader is waiting for room: the next take wakes it (once).
    reader_waiting: bool,
}

impl State {
    fn has_room(&self, max_messages: usize, max_bytes: usize) -> bool {
        self.queue.len() < max_messages && self.bytes < max_bytes
    }
}

impl Shared {
    fn lock(&self) -> ShortLockGuard<'_, State> {
        self.state.lock()
    }
}

impl Inbound {
    /// A queue that takes a message while it holds fewer than `max_messages`
    /// messages and fewer than `max_bytes` payload bytes (so one message may
    /// pass the byte mark; none is taken after it).
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: ShortLock::new(State {
                    queue: VecDeque::new(),
                    bytes: 0,
                    closed: false,
                    reader_waiting: false,
                }),
                max_messages,
                max_bytes,
                readable: Notify::new(),
                writable: Notify::new(),
            }),
        }
    }

    /// The next message, waiting for one; `Err` once the transport has
    /// closed and the queue is empty.
    pub async fn recv(&self) -> Result<Incoming, InboundClosed> {
        loop {
            match self.try_recv() {
                Ok(message) => return Ok(message),
                Err(TryRecvError::Closed) => return Err(InboundClosed),
                Err(TryRecvError::Empty) => {}
            }
            // Registered before the second look, so that a batch pushed in
            // between wakes us.
            let readable = self.shared.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            match self.try_recv() {
                Ok(message) => return Ok(message),
                Err(TryRecvError::Closed) => return Err(InboundClosed),
                Err(TryRecvError::Empty) => readable.await,
            }
        }
    }

    /// The next message if one is queued now.
    #[inline]
    pub fn try_recv(&self) -> Result<Incoming, TryRecvError> {
        let mut state = self.shared.lock();
        let Some(message) = state.queue.pop_front() else {
            return Err(if state.closed { TryRecvError::Closed } else { TryRecvError::Empty });
        };
        state.bytes -= message.payload.len();
        let wake_reader = std::mem::take(&mut state.reader_waiting);
        drop(state);
        if wake_reader {
            self.shared.writable.notify_waiters();
        }
        Ok(message)
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes queued now.
    pub fn bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Moves messages from the front of `batch` into the queue, waiting for
    /// room while it is full, until `batch` is empty. Returns `false` (with
    /// what was not taken left in `batch`) if the queue is closed.
    pub(crate) async fn push_batch(&self, batch: &mut VecDeque<Incoming>) -> bool {
        while !batch.is_empty() {
            let room = self.room();
            tokio::pin!(room);
            if self.offer(batch, room.as_mut()).is_err() {
                return false;
            }
            if !batch.is_empty() {
                room.await;
            }
        }
        true
    }

    /// A wake-up for a reader waiting for room, to hand to
    /// [`offer`](Self::offer).
    pub(crate) fn room(&self) -> Notified<'_> {
        self.shared.writable.notified()
    }

    /// Moves messages from the front of `batch` into the queue while it has
    /// room, without waiting. If some are left, `room` is registered first
    /// (under the lock, so that a take made after it sees the reader
    /// waiting) and completes once the application has taken a message or
    /// the queue closed. Returns the messages and payload bytes moved;
    /// `Err` (nothing moved) if the queue is closed.
    pub(crate) fn offer(
        &self,
        batch: &mut VecDeque<Incoming>,
        room: Pin<&mut Notified<'_>>,
    ) -> Result<(usize, usize), InboundClosed> {
        let (max_messages, max_bytes) = (self.shared.max_messages, self.shared.max_bytes);
        let moved = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(InboundClosed);
            }
            let (bytes_before, before) = (state.bytes, state.queue.len());
            if before == 0 {
                if let Some(bytes) = fits_whole(batch, max_messages, max_bytes) {
                    // The usual case when the application keeps up: the batch
                    // becomes the queue, no message copied one by one, and
                    // the reader decodes its next one into the emptied
                    // queue's buffer.
                    std::mem::swap(&mut state.queue, batch);
                    state.bytes += bytes;
                }
            }
            while state.has_room(max_messages, max_bytes) {
                let Some(message) = batch.pop_front() else { break };
                state.bytes += message.payload.len();
                state.queue.push_back(message);
            }
            if !batch.is_empty() {
                room.enable();
                state.reader_waiting = true;
            }
            (state.queue.len() - before, state.bytes - bytes_before)
        };
        if moved.0 > 0 {
            // One wake-up per batch; every waiting receiver looks again.
            self.shared.readable.notify_waiters();
        }
        Ok(moved)
    }

    /// Closes the queue: readers stop, receivers take what is left, then
    /// get [`InboundClosed`].
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.readable.notify_waiters();
        self.shared.writable.notify_waiters();
    }
}

/// The payload bytes of `batch` if an empty queue would take all of it, one
/// message at a time (each taken while the queue holds fewer than
/// `max_messages` messages and fewer than `max_bytes` bytes).
fn fits_whole(batch: &VecDeque<Incoming>, max_messages: usize, max_bytes: usize) -> Option<usize> {
    if batch.len() > max_messages {
        return None;
    }
    let mut bytes = 0;
    for message in batch {
        if bytes >= max_bytes {
            return None;
        }
        bytes += message.payload.len();
    }
    Some(bytes)
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Read under the lock, formatted after it.
        let (len, bytes, closed) = {
            let state = self.shared.lock();
            (state.queue.len(), state.bytes, state.closed)
        };
        f.debug_struct("Inbound").field("len", &len).field("bytes", &bytes).field("closed", &closed).finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use smartsock_framing::PeerId;

    use super::*;

    fn batch_of(lengths: &[usize]) -> VecDeque<Incoming> {
        let peer = PeerId::from([7; 16]);
        lengths
            .iter()
            .map(|&len| Incoming { peer, payload: Bytes::from(vec![0; len]), request: None })
            .collect()
    }

    /// Offers `lengths` to a queue holding `queued` first; returns what the
    /// queue then holds (lengths in order, bytes) and the lengths left over,
    /// after checking what `offer` said it moved.
    fn offer_to(
        queued: &[usize],
        lengths: &[usize],
        max_messages: usize,
        max_bytes: usize,
    ) -> (Vec<usize>, usize, Vec<usize>) {
        let inbound = Inbound::new(max_messages, max_bytes);
        let room = inbound.room();
        tokio::pin!(room);
        inbound.offer(&mut batch_of(queued), room.as_mut()).expect("open");
        let mut batch = batch_of(lengths);
        let moved = inbound.offer(&mut batch, room.as_mut()).expect("open");
        let state = inbound.shared.lock();
        let held: Vec<usize> = state.queue.iter().map(|m| m.payload.len()).collect();
        let new = &held[queued.len()..];
        assert_eq!(moved, (new.len(), new.iter().sum()), "what offer says it moved");
        (held, state.bytes, batch.iter().map(|m| m.payload.len()).collect())
    }

    #[test]
    fn an_empty_queue_takes_a_whole_batch_exactly_as_one_message_at_a_time() {
        // 4 messages, 100 bytes: at the marks, each side of them.
        for (lengths, expected_taken) in [
            (&[10, 20, 30, 40][..], 4),    // exactly the message mark
            (&[10, 20, 30, 40, 1][..], 4), // one past it
            (&[50, 49, 5][..], 3),         // 99 bytes before the last: it passes the byte mark
            (&[50, 50, 5][..], 2),         // at the byte mark: none taken after it
            (&[100, 1][..], 1),            // one message at the byte mark
            (&[][..], 0),
        ] {
            let (held, bytes, left) = offer_to(&[], lengths, 4, 100);
            assert_eq!(held, lengths[..expected_taken], "{lengths:?}");
            assert_eq!(bytes, lengths[..expected_taken].iter().sum::<usize>(), "{lengths:?}");
            assert_eq!(left, lengths[expected_taken..], "{lengths:?}");
        }
    }

    #[test]
    fn a_queue_not_empty_takes_from_the_batch_up_to_its_marks() {
        let (held, bytes, left) = offer_to(&[60], &[30, 15, 1], 4, 100);
        assert_eq!((held, bytes, left), (vec![60, 30, 15], 105, vec![1]));
    }
}
