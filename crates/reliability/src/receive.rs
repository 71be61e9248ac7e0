//! The receiving side, for every socket whatever its own guarantee:
//! acknowledging DATA_REQs and dropping repeats.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use smartsock_transport::{Incoming, MsgId, PeerId};
use tracing::debug;

/// Remembers the last `capacity` (sender, message id) pairs seen, so that a
/// repeat among them is recognised. Best effort: a repeat older than the
/// window is not recognised.
///
/// ```
/// use smartsock_reliability::DuplicateFilter;
/// use smartsock_transport::{MsgId, PeerId};
///
/// let mut filter = DuplicateFilter::new(2);
/// let (alice, bob) = (PeerId::random(), PeerId::random());
/// let id = MsgId::from_bytes([1; 16]);
/// assert!(filter.first_time(alice, id));
/// assert!(!filter.first_time(alice, id)); // a repeat
/// assert!(filter.first_time(bob, id)); // another sender's message
/// ```
#[derive(Debug)]
pub struct DuplicateFilter {
    capacity: usize,
    seen: HashSet<(PeerId, MsgId)>,
    order: VecDeque<(PeerId, MsgId)>,
}

impl DuplicateFilter {
    /// A filter remembering the last `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, seen: HashSet::with_capacity(capacity), order: VecDeque::with_capacity(capacity) }
    }

    /// Records the message; false if it was already in the window.
    pub fn first_time(&mut self, peer: PeerId, id: MsgId) -> bool {
        if !self.seen.insert((peer, id)) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back((peer, id));
        true
    }
}

/// When a DATA_REQ is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckTiming {
    /// When the application takes the message (`recv` returns it): a receiver
    /// that dies with messages still queued has not acknowledged them, so the
    /// sender sends them again. The default.
    #[default]
    OnTake,
    /// As soon as it is read off the connection, as other aiomsg
    /// implementations do. Set the transport's `ack_on_arrival` to match.
    OnArrival,
}

/// What a socket does with each received message before the application
/// sees it: acknowledges DATA_REQs (unless the transport did on arrival) and
/// drops repeats.
///
/// Shared by all of a socket's receivers (`&self`); the filter's lock is held
/// only for a set lookup.
#[derive(Debug)]
pub struct ReceiveSide {
    filter: Option<Mutex<DuplicateFilter>>,
    duplicates: AtomicU64,
    unacked: AtomicU64,
}

impl ReceiveSide {
    /// With a duplicate window of `window` messages, or none for `0`.
    pub fn new(window: usize) -> Self {
        let filter = (window > 0).then(|| Mutex::new(DuplicateFilter::new(window)));
        Self { filter, duplicates: AtomicU64::new(0), unacked: AtomicU64::new(0) }
    }

    /// Acknowledges `incoming` if it asks for it, then returns what the
    /// application should see: `None` for a repeat.
    pub fn take(&self, incoming: Incoming) -> Option<(PeerId, Bytes)> {
        let Incoming { peer, payload, request, .. } = incoming;
        if let Some(ack) = request {
            // A repeat is acknowledged too: the first ACK may have been lost.
            if !ack.already_sent() && ack.send().is_err() {
                self.unacked.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, id = %ack.id(), "could not queue an ACK; the sender will resend");
            }
            if let Some(filter) = &self.filter {
                let first = filter.lock().unwrap_or_else(|e| e.into_inner()).first_time(peer, ack.id());
                if !first {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, id = %ack.id(), "dropping a repeated message");
                    return None;
                }
            }
        }
        Some((peer, payload))
    }

    /// Repeats dropped so far.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// ACKs that could not be queued (connection gone or its outbox full).
    pub fn acks_not_sent(&self) -> u64 {
        self.unacked.load(Ordering::Relaxed)
    }
}
