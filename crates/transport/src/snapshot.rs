//! [`Snapshots`]: the connected peers as senders read them, once per send,
//! without a read-modify-write on the usual path.
//!
//! The table lives in an [`ArcSwap`], replaced whenever the peers change.
//! Reading it there costs two atomic read-modify-writes (the load's debt
//! slot and the guard's release), about a seventh of a 16-byte send. So each
//! thread keeps copies of the tables it read last, of up to [`SLOTS`]
//! transports, each with its transport's generation at the time: a send
//! whose transport has not changed its peers since (one plain load of the
//! generation) reads the copy.
//!
//! The generation is odd while a new table is being stored, and a copy is
//! kept only when the generation was even and the same before and after
//! the table was read: so a thread never reads a table older than one that
//! any read (on any thread) returned before it.
//!
//! The cost: a thread holds the last table it read of each of up to
//! [`SLOTS`] transports until it reads a newer one, reads other transports
//! instead, or ends, after the transport itself may have closed. A table's
//! peers are handles to their outboxes, not their connections: it keeps no
//! stream open, and an outbox lets go of its buffers when its connection
//! ends, so what a held table keeps is small.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::peer::PeerSnapshot;

/// The transports whose tables a thread keeps copies of.
pub(crate) const SLOTS: usize = 4;

/// A thread that reads more transports than it has slots for reads the
/// others from their shared tables, as before, and gives one slot to a new
/// transport only after this many such reads: a thread that cycles through
/// many transports does not pay for copies it would not keep.
const READS_BEFORE_EVICTING: u32 = 64;

/// Gives each transport's table an identity that no later transport reuses
/// (an address could be).
static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(0);

/// One transport's peer table, for senders.
pub(crate) struct Snapshots {
    transport: u64,
    /// Even when stable, odd while a new table is being stored.
    generation: AtomicU64,
    current: ArcSwap<PeerSnapshot>,
}

/// The table a thread read last of one transport.
struct Kept {
    transport: u64,
    generation: u64,
    table: Arc<PeerSnapshot>,
}

/// One thread's copies.
struct Copies {
    slots: [Option<Kept>; SLOTS],
    /// Reads of transports with no slot since the last eviction.
    uncached: u32,
    /// The slot to give up next.
    next_evicted: usize,
}

impl Copies {
    const EMPTY: Copies = Copies { slots: [const { None }; SLOTS], uncached: 0, next_evicted: 0 };

    /// The slot for `transport`'s table: its own, a free one, or (now and
    /// then) another transport's. `None`: read the shared table this time.
    fn slot_for(&mut self, transport: u64) -> Option<usize> {
        let own = self.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.transport == transport));
        if let Some(own) = own.or_else(|| self.slots.iter().position(Option::is_none)) {
            return Some(own);
        }
        self.uncached += 1;
        if self.uncached < READS_BEFORE_EVICTING {
            return None;
        }
        self.uncached = 0;
        let evicted = self.next_evicted;
        self.next_evicted = (evicted + 1) % SLOTS;
        Some(evicted)
    }
}

thread_local! {
    static COPIES: RefCell<Copies> = const { RefCell::new(Copies::EMPTY) };
}

impl Snapshots {
    pub(crate) fn new(table: PeerSnapshot) -> Self {
        Self {
            transport: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            current: ArcSwap::from_pointee(table),
        }
    }

    /// Replaces the table. The caller makes stores one at a time (the
    /// transport stores under its peers' lock).
    pub(crate) fn store(&self, table: PeerSnapshot) {
        self.publish(table);
        self.settle();
    }

    /// A store's first steps: the new table can be read, and the generation
    /// is odd. Odd from before the new table can be read until after: a
    /// thread that reads the new table, or hears of it from one that did,
    /// then finds its copy's generation out of date.
    fn publish(&self, table: PeerSnapshot) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.current.store(Arc::new(table));
    }

    /// A store's last step: the new table's generation, even again.
    fn settle(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The table now, as a reference of the caller's own.
    pub(crate) fn load_full(&self) -> Arc<PeerSnapshot> {
        self.current.load_full()
    }

    /// Runs `f` on the table now: on this thread's copy when it is current.
    // Always inlined: as a call, `f` (the send path's routing closure, a
    // handful of references its caller had just stored) was copied into
    // `Some(f)` below in 16-byte loads from 8-byte stores, which stalled on
    // store forwarding; inlined, the references stay in registers. In
    // paired runs, 16 and 64 B one-way went up by a fifth.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&PeerSnapshot) -> R) -> R {
        // Acquire: pairs with `store`'s last bump, so a copy kept at this
        // generation is the table it announced.
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        // Written through a borrow rather than returned through
        // `try_with`'s `Result` and an `Option`: each layer was another copy
        // of the routing's result on the send path.
        let mut result = None;
        let _ = COPIES.try_with(|copies| {
            // Taken already: `f` of an outer read called back in here.
            let Ok(mut copies) = copies.try_borrow_mut() else {
                return;
            };
            let Some(index) = copies.slot_for(self.transport) else {
                return;
            };
            let slot = &mut copies.slots[index];
            let current =
                slot.as_ref().is_some_and(|c| c.transport == self.transport && c.generation == generation);
            if !current {
                let table = self.current.load_full();
                let settled = generation % 2 == 0 && self.generation.load(Ordering::Acquire) == generation;
                if !settled {
                    // A store came between: read what we have, keep no copy.
                    result = Some((f.take().expect("called once"))(&table));
                    return;
                }
                // The copy this replaces is dropped here, under the borrow:
                // a read from its drop would take the shared path below.
                *slot = Some(Kept { transport: self.transport, generation, table });
            }
            let table = &slot.as_ref().expect("just filled").table;
            result = Some((f.take().expect("called once"))(table));
        });
        match result {
            Some(result) => result,
            // No slot this time, called back from `f`, or while the thread's
            // copies are being dropped at its end: read the shared table.
            None => (f.take().expect("not called"))(&self.current.load()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerTable;

    fn empty() -> PeerSnapshot {
        PeerSnapshot::new(PeerTable::from(Vec::new()))
    }

    fn table_of(snapshots: &Snapshots) -> *const PeerSnapshot {
        snapshots.with(|table| table as *const PeerSnapshot)
    }

    #[test]
    fn a_read_after_a_store_sees_the_new_table() {
        let snapshots = Snapshots::new(empty());
        let first = table_of(&snapshots);
        assert_eq!(table_of(&snapshots), first, "unchanged: the thread's copy");
        snapshots.store(empty());
        let second = table_of(&snapshots);
        assert_ne!(second, first);
        assert_eq!(second, Arc::as_ptr(&snapshots.load_full()));
    }

    #[test]
    fn each_transport_reads_its_own_table() {
        let one = Snapshots::new(empty());
        let other = Snapshots::new(empty());
        // Both at generation 0: only the transport's identity tells them apart.
        assert_eq!(table_of(&one), Arc::as_ptr(&one.load_full()));
        assert_eq!(table_of(&other), Arc::as_ptr(&other.load_full()));
        assert_eq!(table_of(&one), Arc::as_ptr(&one.load_full()));
    }

    #[test]
    fn a_read_from_inside_a_read_gets_the_table() {
        let snapshots = Snapshots::new(empty());
        let outer = snapshots.with(|outer| {
            let inner = table_of(&snapshots);
            assert_eq!(inner, outer as *const PeerSnapshot);
            inner
        });
        assert_eq!(outer, Arc::as_ptr(&snapshots.load_full()));
    }

    #[test]
    fn a_reading_thread_sees_a_store_made_before_its_next_read() {
        use std::sync::mpsc;
        let snapshots = Arc::new(Snapshots::new(empty()));
        let (ask, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel::<usize>();
        let reader = snapshots.clone();
        let thread = std::thread::spawn(move || {
            // Holds its copy between the reads, as a sender's thread does.
            while asked.recv().is_ok() {
                answer.send(table_of(&reader) as usize).expect("answer");
            }
        });
        ask.send(()).expect("ask");
        let before = answers.recv().expect("first read");
        assert_eq!(before, Arc::as_ptr(&snapshots.load_full()) as usize);
        snapshots.store(empty());
        ask.send(()).expect("ask");
        let after = answers.recv().expect("second read");
        assert_eq!(after, Arc::as_ptr(&snapshots.load_full()) as usize);
        assert_ne!(after, before);
        drop(ask);
        thread.join().expect("reader");
    }

    fn kept_generation(snapshots: &Snapshots) -> Option<u64> {
        COPIES.with(|copies| {
            let copies = copies.borrow();
            copies.slots.iter().flatten().find(|c| c.transport == snapshots.transport).map(|c| c.generation)
        })
    }

    #[test]
    fn no_copy_is_kept_while_a_store_is_under_way() {
        let snapshots = Snapshots::new(empty());
        table_of(&snapshots);
        assert_eq!(kept_generation(&snapshots), Some(0));
        let old = snapshots.load_full();
        // Between `store`'s steps, the new table readable and not settled:
        // a read (after, say, `Transport::peers` on another thread listed a
        // new peer) gets the new table, not this thread's copy of the old
        // one, and keeps no copy of it as the generation's. Fails if
        // `publish` does not make the generation odd first.
        snapshots.publish(empty());
        assert_ne!(Arc::as_ptr(&snapshots.load_full()), Arc::as_ptr(&old));
        assert_eq!(table_of(&snapshots), Arc::as_ptr(&snapshots.load_full()));
        assert_eq!(kept_generation(&snapshots), Some(0));
        snapshots.settle();
        assert_eq!(table_of(&snapshots), Arc::as_ptr(&snapshots.load_full()));
        assert_eq!(kept_generation(&snapshots), Some(2));
    }

    #[test]
    fn a_thread_of_more_transports_than_slots_gives_one_up_after_its_reads_elsewhere() {
        let mut copies = Copies::EMPTY;
        for transport in 0..SLOTS as u64 {
            let slot = copies.slot_for(transport).expect("a free slot");
            copies.slots[slot] = Some(Kept { transport, generation: 0, table: Arc::new(empty()) });
        }
        for round in 0..2 {
            for _ in 1..READS_BEFORE_EVICTING {
                assert_eq!(copies.slot_for(99), None, "read from the shared table");
            }
            assert_eq!(copies.slot_for(99), Some(round), "the next slot in turn");
        }
        assert_eq!(copies.slot_for(3), Some(3), "a transport with a slot keeps it");
    }

    #[test]
    fn reads_of_more_transports_than_slots_each_see_their_own_table() {
        let all: Vec<_> = (0..SLOTS + 2).map(|_| Snapshots::new(empty())).collect();
        for round in 0..3 * READS_BEFORE_EVICTING {
            for (i, snapshots) in all.iter().enumerate() {
                if (round as usize + i) % 7 == 0 {
                    snapshots.store(empty());
                }
                assert_eq!(
                    table_of(snapshots),
                    Arc::as_ptr(&snapshots.load_full()),
                    "round {round}, transport {i}"
                );
            }
        }
    }
}
