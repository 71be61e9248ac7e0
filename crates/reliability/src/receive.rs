//! The receiving side, for every socket whatever its own guarantee:
//! acknowledging DATA_REQs and dropping repeats.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use smartsock_transport::{AckError, AckHandle, Incoming, MsgId, PeerId};
use tracing::debug;

use crate::short_lock::ShortLock;

/// The largest duplicate window a socket accepts: about 84 MiB of
/// memory, taken when the socket is built.
pub const MAX_DUPLICATE_WINDOW: usize = 1 << 20;

/// Remembers recent (sender, message id) pairs, so that a repeat among them
/// is recognised: at least the last `capacity` recorded, at most the last
/// `2 * capacity - 1`. Best effort: a repeat older than that is not
/// recognised.
///
/// The window is kept as two generations of `capacity` messages each: new
/// messages join the current one; when it is full it becomes the previous
/// one, and the previous one is cleared to be the next current. So no
/// message ever leaves one by one (see docs/ARCHITECTURE.md for why).
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
    /// see the seed to aim at collisions (and each generation is bounded).
    hasher: foldhash::fast::RandomState,
    current: Generation,
    previous: Generation,
}

/// Up to `capacity` messages, in the order recorded, and an index of them
/// by hash. The index is sized for `capacity` when it is made and only ever
/// cleared whole, never removed from: it never grows, and never has to
/// tidy removed slots.
struct Generation {
    messages: Vec<(PeerId, MsgId)>,
    /// Positions in `messages` (`u32`: a window is at most
    /// [`MAX_DUPLICATE_WINDOW`] messages, and a small index stays in cache).
    index: HashTable<u32>,
}

impl Generation {
    fn new(capacity: usize) -> Self {
        Self { messages: Vec::with_capacity(capacity), index: HashTable::with_capacity(capacity) }
    }

    fn contains(&self, hash: u64, key: (PeerId, MsgId)) -> bool {
        let messages = &self.messages;
        self.index.find(hash, |&at| messages[at as usize] == key).is_some()
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.index.clear();
    }
}

impl std::fmt::Debug for DuplicateFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplicateFilter")
            .field("capacity", &self.capacity)
            .field("len", &(self.current.messages.len() + self.previous.messages.len()))
            .finish()
    }
}

impl DuplicateFilter {
    /// A filter remembering at least the last `capacity` messages (at
    /// least 1, at most [`MAX_DUPLICATE_WINDOW`]: a larger capacity is
    /// taken as that).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_DUPLICATE_WINDOW);
        Self {
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            current: Generation::new(capacity),
            previous: Generation::new(capacity),
        }
    }

    /// Whether the message is in the window, without recording it.
    pub fn contains(&self, peer: PeerId, id: MsgId) -> bool {
        let key = (peer, id);
        let hash = self.hasher.hash_one(key);
        self.current.contains(hash, key) || self.previous.contains(hash, key)
    }

    /// Records the message; false if it was already in the window.
    ///
    /// One probe of the current generation's index both looks for the
    /// message and finds its place (a look, then an insert, was two).
    pub fn first_time(&mut self, peer: PeerId, id: MsgId) -> bool {
        let key = (peer, id);
        let hash = self.hasher.hash_one(key);
        if self.previous.contains(hash, key) {
            return false;
        }
        let Generation { messages, index } = &mut self.current;
        let at = messages.len() as u32;
        // The index never grows (it was made for `capacity`), so the rehash
        // closure is never called; it is still right.
        let hasher = &self.hasher;
        let entry = index.entry(
            hash,
            |&at| messages[at as usize] == key,
            |&at| hasher.hash_one(messages[at as usize]),
        );
        match entry {
            Entry::Occupied(_) => return false,
            Entry::Vacant(slot) => {
                slot.insert(at);
            }
        }
        messages.push(key);
        if messages.len() == self.capacity {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
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
/// only for one look in the window, or one entry, and it takes no other
/// lock. Every `window` entries the window turns and clears its older
/// generation's index: a write of 1 to 2.3 bytes per message of the
/// window (8 KiB by default, 2 MiB at [`MAX_DUPLICATE_WINDOW`]) that other
/// receivers spin through. The filter allocates nothing after it is built.
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
    fn each_generation_holds_at_most_its_capacity_and_its_index_never_grows() {
        const CAPACITY: u64 = 100;
        let mut filter = DuplicateFilter::new(CAPACITY as usize);
        let buckets = filter.current.index.capacity();
        let peer = PeerId::random();
        for n in 0..10_000 {
            assert!(filter.first_time(peer, id(n)), "message {n} is new");
            for generation in [&filter.current, &filter.previous] {
                assert!(generation.messages.len() as u64 <= CAPACITY);
                assert_eq!(generation.index.len(), generation.messages.len());
                assert_eq!(generation.index.capacity(), buckets, "no index grew");
            }
        }
        // 10,000 is a multiple of the capacity: the window has just turned,
        // so it holds exactly the last CAPACITY (the oldest of them too,
        // at the boundary); the one before them has left it.
        assert_eq!(filter.current.messages.len(), 0);
        assert!(!filter.first_time(peer, id(10_000 - CAPACITY)));
        assert!(!filter.first_time(peer, id(9_999)));
        assert!(filter.first_time(peer, id(10_000 - CAPACITY - 1)));
    }

    #[test]
    fn a_capacity_past_the_largest_window_is_taken_as_it() {
        assert_eq!(DuplicateFilter::new(MAX_DUPLICATE_WINDOW + 1).capacity, MAX_DUPLICATE_WINDOW);
        assert_eq!(DuplicateFilter::new(0).capacity, 1);
    }
}
