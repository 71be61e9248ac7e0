//! The receiving side, for every socket whatever its own guarantee:
//! acknowledging DATA_REQs and dropping repeats.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use smartsock_transport::{AckError, AckHandle, Incoming, MsgId, PeerId};
use tracing::debug;

use crate::short_lock::ShortLock;

/// The largest duplicate window a socket accepts: about 60 MiB of
/// memory, taken when the socket is built (the index may later move once
/// into a table twice its size, see [`ReceiveSide`]).
pub const MAX_DUPLICATE_WINDOW: usize = 1 << 20;

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
pub struct DuplicateFilter {
    capacity: usize,
    /// A fast hash, seeded per filter: peers choose their ids, but cannot
    /// see the seed to aim at collisions (and the window is bounded).
    hasher: foldhash::fast::RandomState,
    /// The window, oldest first, each with its hash: a message's hash is
    /// computed once, when it arrives (the oldest leaves by its stored one).
    order: VecDeque<(PeerId, MsgId, u64)>,
    /// Where each message of the window is in `order`, found by its hash;
    /// a position counts from the first message ever recorded.
    index: HashTable<u64>,
    /// The position of `order`'s front.
    base: u64,
}

impl std::fmt::Debug for DuplicateFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplicateFilter")
            .field("capacity", &self.capacity)
            .field("len", &self.order.len())
            .finish()
    }
}

impl DuplicateFilter {
    /// A filter remembering the last `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            // One more than the window: see `first_time`.
            order: VecDeque::with_capacity(capacity.saturating_add(1)),
            index: HashTable::with_capacity(capacity.saturating_add(1)),
            base: 0,
        }
    }

    /// Whether the message is in the window, without recording it.
    pub fn contains(&self, peer: PeerId, id: MsgId) -> bool {
        self.find(peer, id, self.hasher.hash_one((peer, id))).is_some()
    }

    fn find(&self, peer: PeerId, id: MsgId, hash: u64) -> Option<&u64> {
        let (order, base) = (&self.order, self.base);
        self.index.find(hash, |&at| {
            let (p, i, _) = order[(at - base) as usize];
            p == peer && i == id
        })
    }

    /// Records the message; false if it was already in the window.
    ///
    /// One probe of the index both looks for the message and finds its
    /// place (a look, then an insert, was two; a hash table operation per
    /// received at-least-once message shows in the receiver's profile).
    /// The message joins the window before the oldest leaves it, so a
    /// repeat of the oldest is still recognised: for that moment the window
    /// holds one more than its capacity, which the index has room for.
    pub fn first_time(&mut self, peer: PeerId, id: MsgId) -> bool {
        let hash = self.hasher.hash_one((peer, id));
        let at = self.base + self.order.len() as u64;
        // In `order` first, so that the index can rehash it if it must.
        self.order.push_back((peer, id, hash));
        let (order, base) = (&self.order, self.base);
        let entry = self.index.entry(
            hash,
            |&at| {
                let (p, i, _) = order[(at - base) as usize];
                p == peer && i == id
            },
            |&at| order[(at - base) as usize].2,
        );
        match entry {
            Entry::Occupied(_) => {
                self.order.pop_back();
                return false;
            }
            Entry::Vacant(slot) => {
                slot.insert(at);
            }
        }
        if self.order.len() > self.capacity {
            if let Some((_, _, oldest)) = self.order.pop_front() {
                let base = self.base;
                if let Ok(entry) = self.index.find_entry(oldest, |&at| at == base) {
                    entry.remove();
                }
                self.base += 1;
            }
        }
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
    /// When the application says the work is done: a message taken with an
    /// [`AckToken`] (see [`ReceiveSide::take_deferred`]) is acknowledged by
    /// [`AckToken::ack`]; a token dropped without it leaves the message
    /// unacknowledged, so the sender sends it again (at once if this
    /// receiver's connection is lost, else after its resend timeout), to
    /// this or another receiver. Receives that hand out no token
    /// acknowledge on take, as [`OnTake`](AckTiming::OnTake) does.
    Explicit,
}

/// What a socket does with each received message before the application
/// sees it: acknowledges DATA_REQs (unless the transport did on arrival) and
/// drops repeats.
///
/// Shared by all of a socket's receivers (`&self`); the filter's lock (a
/// spin lock: it is taken for every at-least-once message received) is held
/// only for one look in the window, or one entry and the oldest's removal,
/// and it takes no other lock. Now and then an entry makes the index tidy
/// its removed slots: a pass over the window (4096 messages by default, up
/// to [`MAX_DUPLICATE_WINDOW`]) that other receivers spin through. The
/// first such pass may move the index into a table twice its size, the
/// one allocation a filter makes after it is built.
#[derive(Debug)]
pub struct ReceiveSide {
    filter: Option<ShortLock<DuplicateFilter>>,
    duplicates: AtomicU64,
    unacked: AtomicU64,
}

impl ReceiveSide {
    /// With a duplicate window of `window` messages, or none for `0`.
    pub fn new(window: usize) -> Self {
        let filter = (window > 0).then(|| ShortLock::new(DuplicateFilter::new(window)));
        Self { filter, duplicates: AtomicU64::new(0), unacked: AtomicU64::new(0) }
    }

    /// Acknowledges `incoming` if it asks for it, then returns what the
    /// application should see: `None` for a repeat.
    #[inline]
    pub fn take(&self, incoming: Incoming) -> Option<(PeerId, Bytes)> {
        let Incoming { peer, payload, request, .. } = incoming;
        if let Some(ack) = request {
            // A repeat is acknowledged too: the first ACK may have been lost.
            if !ack.already_sent() && ack.send().is_err() {
                self.unacked.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, id = %ack.id(), "could not queue an ACK; the sender will resend");
            }
            if let Some(filter) = &self.filter {
                let first = filter.lock().first_time(peer, ack.id());
                if !first {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, id = %ack.id(), "dropping a repeated message");
                    return None;
                }
            }
        }
        Some((peer, payload))
    }

    /// Like [`take`](ReceiveSide::take), but the ACK is left to the returned
    /// [`AckToken`] (for [`AckTiming::Explicit`]). Only an acknowledged
    /// message enters the duplicate window: a copy that arrives while the
    /// first is still being worked on, or after its token was dropped, is
    /// delivered again; a copy of one already acknowledged is dropped (and
    /// acknowledged again, the first ACK may have been lost).
    pub fn take_deferred(self: &Arc<Self>, incoming: Incoming) -> Option<(PeerId, Bytes, AckToken)> {
        let Some(ack) = incoming.request.as_ref().filter(|ack| !ack.already_sent()).cloned() else {
            // Nothing to acknowledge (DATA), or acknowledged on arrival.
            return self.take(incoming).map(|(peer, payload)| (peer, payload, AckToken::none(peer)));
        };
        let Incoming { peer, payload, .. } = incoming;
        if let Some(filter) = &self.filter {
            if filter.lock().contains(peer, ack.id()) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, id = %ack.id(), "dropping a repeat of an acknowledged message");
                if ack.send().is_err() {
                    self.unacked.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
        }
        Some((peer, payload, AckToken { ack: Some(ack), peer, side: Some(self.clone()) }))
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

/// The acknowledgement of one received message, sent when the work on it is
/// done: [`ack`](AckToken::ack). Dropping the token without acknowledging
/// means "not done": no ACK goes, and the sender sends the message again
/// (see [`AckTiming::Explicit`]).
///
/// A message that asked for no ACK (sent at most once), or was acknowledged
/// on arrival, comes with a token that has nothing to send.
#[must_use = "a token dropped without ack() leaves its message unacknowledged: the sender sends it again"]
pub struct AckToken {
    ack: Option<AckHandle>,
    peer: PeerId,
    side: Option<Arc<ReceiveSide>>,
}

impl AckToken {
    /// A token with nothing to acknowledge.
    pub fn none(peer: PeerId) -> Self {
        Self { ack: None, peer, side: None }
    }

    /// Sends the ACK, on the connection the message came on; from now on a
    /// repeat of the message is dropped. Fails if that connection has ended
    /// (the sender sends the message again, to this or another receiver) or
    /// its ACK queue is full (the sender resends, and the repeat is
    /// acknowledged at once).
    pub fn ack(mut self) -> Result<(), AckError> {
        let Some(ack) = self.ack.take() else { return Ok(()) };
        if let Some(side) = self.side.take() {
            if let Some(filter) = &side.filter {
                filter.lock().first_time(self.peer, ack.id());
            }
            let sent = ack.send();
            if sent.is_err() {
                side.unacked.fetch_add(1, Ordering::Relaxed);
            }
            return sent;
        }
        ack.send()
    }

    /// The id of the message to acknowledge; `None` if there is nothing to send.
    pub fn id(&self) -> Option<MsgId> {
        self.ack.as_ref().map(AckHandle::id)
    }

    /// Whether [`ack`](AckToken::ack) has an ACK to send.
    pub fn needs_ack(&self) -> bool {
        self.ack.is_some()
    }
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckToken").field("peer", &self.peer).field("id", &self.id()).finish()
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if let Some(ack) = &self.ack {
            debug!(peer = %self.peer, id = %ack.id(), "dropped without an ACK: the sender will send it again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MsgId {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&n.to_be_bytes());
        MsgId::from_bytes(bytes)
    }

    #[test]
    fn the_window_holds_exactly_its_capacity_and_its_index_no_more() {
        const CAPACITY: u64 = 100;
        let mut filter = DuplicateFilter::new(CAPACITY as usize);
        let peer = PeerId::random();
        for n in 0..10_000 {
            assert!(filter.first_time(peer, id(n)), "message {n} is new");
            assert!(filter.order.len() as u64 <= CAPACITY && filter.index.len() == filter.order.len());
        }
        // The last CAPACITY are repeats (the oldest of them too, at the
        // boundary); the one before them has left the window.
        assert!(!filter.first_time(peer, id(10_000 - CAPACITY)));
        assert!(!filter.first_time(peer, id(9_999)));
        assert!(filter.first_time(peer, id(10_000 - CAPACITY - 1)));
        assert_eq!(filter.order.len() as u64, CAPACITY);
    }
}
