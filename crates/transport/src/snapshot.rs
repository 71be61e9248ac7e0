//! [`Snapshots`]: the connected peers as senders read them, once per send,
//! without a read-modify-write on the usual path.
//!
//! The table lives in an [`ArcSwap`], replaced whenever the peers change.
//! Reading it there costs two atomic read-modify-writes (the load's debt
//! slot and the guard's release), about a seventh of a 16-byte send. So each
//! thread keeps a copy of the table it read last, with the transport's
//! generation at that time: a send whose transport has not changed its
//! peers since (one plain load of the generation) reads the copy.
//!
//! The cost: a thread holds the last table it read, of one transport, until
//! it reads another table or ends. That table's peers are handles to their
//! outboxes (small once the connection has ended: the writer empties them),
//! not their connections: a pinned table keeps no stream open.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::peer::PeerSnapshot;

/// Gives each transport's table an identity that no later transport reuses
/// (an address could be).
static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(0);

/// One transport's peer table, for senders.
pub(crate) struct Snapshots {
    transport: u64,
    /// Bumped after each new table is stored.
    generation: AtomicU64,
    current: ArcSwap<PeerSnapshot>,
}

/// The table this thread read last.
struct LastRead {
    transport: u64,
    generation: u64,
    table: Arc<PeerSnapshot>,
}

thread_local! {
    static LAST_READ: RefCell<Option<LastRead>> = const { RefCell::new(None) };
}

impl Snapshots {
    pub(crate) fn new(table: PeerSnapshot) -> Self {
        Self {
            transport: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            current: ArcSwap::from_pointee(table),
        }
    }

    /// Replaces the table. A read on any thread that sees the new
    /// generation reads this table or a newer one.
    pub(crate) fn store(&self, table: PeerSnapshot) {
        self.current.store(Arc::new(table));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The table now, as a reference of the caller's own.
    pub(crate) fn load_full(&self) -> Arc<PeerSnapshot> {
        self.current.load_full()
    }

    /// Runs `f` on the table now: on this thread's copy when it is current.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&PeerSnapshot) -> R) -> R {
        // Acquire: pairs with `store`'s bump, so the table read below is at
        // least the one that generation announced.
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let done = LAST_READ.try_with(|last| {
            // Taken already: `f` of an outer read called back in here.
            let Ok(mut last) = last.try_borrow_mut() else {
                return None;
            };
            let current =
                last.as_ref().is_some_and(|l| l.transport == self.transport && l.generation == generation);
            if !current {
                let table = self.current.load_full();
                // The table this replaces is dropped here, under the borrow:
                // a read from its drop would take the path below.
                *last = Some(LastRead { transport: self.transport, generation, table });
            }
            let table = &last.as_ref().expect("just filled").table;
            Some((f.take().expect("called once"))(table))
        });
        match done {
            Ok(Some(result)) => result,
            // Called back from `f`, or while the thread's copies are being
            // dropped at its end: read the shared table.
            _ => (f.take().expect("not called"))(&self.current.load()),
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
}
