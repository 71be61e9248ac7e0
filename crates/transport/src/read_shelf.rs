//! Read buffers kept for reuse while a connection reads a run of large
//! frames.
//!
//! Frames are split off the read buffer without a copy, so each buffer's
//! memory lives until the application drops the last message read into it.
//! Left to the allocator, a run of 64 KiB messages frees a buffer of about
//! 256 KiB every few messages, often on another thread than the one that
//! reads, and allocates the next: glibc hands such memory back to the OS
//! and maps it again, a page fault per 4 KiB read into. On a 2-worker
//! runtime that cost the receiver about a quarter of its throughput at
//! 64 KiB. The shelf keeps a handle on each buffer the reader moves on
//! from, and takes one back, as is, once every message read into it has
//! been dropped.
//!
//! A handle on a buffer whose messages are still held costs nothing: the
//! messages keep that memory alive anyway. What the shelf adds is the
//! buffers whose messages are all gone, which it holds only up to
//! [`MAX_SPARE_BYTES`] (checked whenever a read finds nothing to read, and
//! on each reuse), and none once the connection goes quiet (a read that
//! brings control frames and no message, such as a HEARTBEAT) or the run
//! of large frames ends.

use std::collections::VecDeque;

use bytes::BytesMut;

/// The most memory a connection keeps in read buffers nobody uses, besides
/// its current one: a few buffers of one run's reads (of about 256 KiB).
pub(crate) const MAX_SPARE_BYTES: usize = 1024 * 1024;
/// The most buffers a shelf keeps a handle on: past the default inbound
/// queue's bytes in reads of 256 KiB. An application that holds on to more
/// messages than this only makes the oldest buffers go back to the
/// allocator as before.
pub(crate) const MAX_SHELVED: usize = 512;

/// A buffer the shelf allocated: its start and size.
#[derive(Clone, Copy)]
struct Allocation {
    start: usize,
    size: usize,
}

impl Allocation {
    /// Whether `buf` is a view into this allocation (after splits, a view
    /// only moves forward inside the allocation it came from). A buffer
    /// that grew by itself has moved to another allocation: should that
    /// one start at the same address, it is no larger than this one (its
    /// view would end past it otherwise), so the size on record bounds it.
    fn holds(&self, buf: &BytesMut) -> bool {
        let start = buf.as_ptr() as usize;
        start >= self.start && start + buf.capacity() <= self.start + self.size
    }
}

/// An empty view into a buffer the reader moved on from: no capacity, so
/// that asking it for room is a question of whether it is the last view.
struct Shelved {
    view: BytesMut,
    allocation: Allocation,
}

impl Shelved {
    fn new(mut view: BytesMut, allocation: Allocation) -> Self {
        view.clear();
        // The capacity left past the last frame goes (a view of its own,
        // dropped at once): the view keeps none.
        drop(view.split_off(0));
        Self { view, allocation }
    }

    /// Whether every message read into the buffer has been dropped.
    fn unused(&mut self) -> bool {
        // Room is found for a view with none only in a buffer no other view
        // shares (`try_reclaim` never allocates); it then has a byte.
        self.view.try_reclaim(1)
    }
}

/// Buffers the reader moved on from, oldest first.
#[derive(Default)]
pub(crate) struct ReadShelf {
    shelved: VecDeque<Shelved>,
    /// The buffer in use, if the shelf allocated it.
    in_use: Option<Allocation>,
}

impl ReadShelf {
    /// Gives `read_buf` at least `room` bytes of spare capacity: in place if
    /// no message read into its buffer is still held; else in the oldest
    /// kept buffer none of whose messages is, or in a new buffer. The
    /// bytes `read_buf` holds move along, and its old buffer is kept (if
    /// the shelf allocated it: its size is then known).
    pub(crate) fn reserve(&mut self, read_buf: &mut BytesMut, room: usize) {
        if read_buf.try_reclaim(room) {
            return;
        }
        let needed = read_buf.len() + room;
        // The spare buffers are bounded here too: a peer that keeps the
        // socket readable leaves no read that finds nothing.
        self.tidy();
        // Messages are taken in the order they were read, so the oldest
        // buffer is usually the first to be free; but one message kept
        // longer must not stop the others from being reused.
        let reused = self.shelved.iter_mut().position(Shelved::unused).and_then(|at| self.shelved.remove(at));
        let reclaimed = reused.and_then(|Shelved { mut view, allocation }| {
            // Dropped if too small for this run's reads.
            view.try_reclaim(needed).then_some((view, allocation))
        });
        let (mut fresh, allocation) = reclaimed.unwrap_or_else(|| {
            let buf = BytesMut::with_capacity(needed);
            let allocation = Allocation { start: buf.as_ptr() as usize, size: buf.capacity() };
            (buf, allocation)
        });
        fresh.extend_from_slice(read_buf);
        let old = std::mem::replace(read_buf, fresh);
        if let Some(old_allocation) = self.in_use.replace(allocation).filter(|a| a.holds(&old)) {
            if self.shelved.len() == MAX_SHELVED {
                self.shelved.pop_front();
            }
            self.shelved.push_back(Shelved::new(old, old_allocation));
        }
    }

    /// A read found nothing to read: of the buffers whose messages are all
    /// dropped, those past [`MAX_SPARE_BYTES`] go back to the allocator,
    /// wherever they are on the shelf.
    pub(crate) fn tidy(&mut self) {
        let mut spare = 0;
        self.shelved.retain_mut(|shelved| {
            if !shelved.unused() {
                return true;
            }
            spare += shelved.allocation.size;
            spare <= MAX_SPARE_BYTES
        });
    }

    /// Gives every kept buffer back: the run of large frames is over, or
    /// the connection has gone quiet.
    pub(crate) fn clear(&mut self) {
        self.shelved.clear();
        self.in_use = None;
    }

    /// The buffers kept, and how many of them are unused.
    #[cfg(test)]
    pub(crate) fn census(&mut self) -> (usize, usize) {
        let unused = self.shelved.iter_mut().map(Shelved::unused).filter(|&unused| unused).count();
        (self.shelved.len(), unused)
    }
}

#[cfg(test)]
mod tests {
    //! The reader's steps by hand: room for a read, a read that fills it,
    //! its frames split off and handed on.

    use std::collections::HashSet;

    use bytes::Bytes;

    use super::*;

    /// Room per read, as for frames of 64 KiB.
    const ROOM: usize = 192 * 1024;

    /// Reads four frames of `fill` into the room `reserve` made (a
    /// multiple of 4) and hands them on.
    fn read_four(buf: &mut BytesMut, room: usize, fill: u8) -> Vec<Bytes> {
        buf.resize(room, fill);
        (0..4).map(|_| buf.split_to(room / 4).freeze()).collect()
    }

    /// `rounds` reads while the application holds the messages of the last
    /// `held` reads. Returns the distinct buffers read into, and the shelf.
    fn reads_with_messages_held(rounds: usize, held: usize, room: usize) -> (usize, ReadShelf) {
        let mut shelf = ReadShelf::default();
        let mut buf = BytesMut::new();
        let mut buffers = HashSet::new();
        let mut holding = std::collections::VecDeque::new();
        for round in 0..rounds {
            shelf.reserve(&mut buf, room);
            assert!(buf.capacity() >= room);
            buffers.insert(buf.as_ptr() as usize);
            holding.push_back((round as u8, read_four(&mut buf, room, round as u8)));
            if holding.len() > held {
                let (fill, messages) = holding.pop_front().unwrap();
                for message in messages {
                    assert!(message.iter().all(|&b| b == fill), "a held message was read over");
                }
            }
        }
        for (fill, messages) in holding {
            assert!(messages.iter().flatten().all(|&b| b == fill), "a held message was read over");
        }
        (buffers.len(), shelf)
    }

    #[test]
    fn a_buffer_whose_messages_are_dropped_at_once_is_read_into_again_in_place() {
        let (buffers, mut shelf) = reads_with_messages_held(50, 0, ROOM);
        assert_eq!(buffers, 1);
        assert_eq!(shelf.census(), (0, 0));
    }

    #[test]
    fn buffers_go_round_while_the_application_holds_the_last_reads_messages() {
        // The read in progress and the two held: three buffers, reused from
        // the fourth read on; none whose messages are held is read into.
        let (buffers, mut shelf) = reads_with_messages_held(50, 2, ROOM);
        assert_eq!(buffers, 3);
        // After the last read (held) two buffers are kept; their messages
        // were dropped after the loop.
        assert_eq!(shelf.census(), (2, 2));
    }

    #[test]
    fn a_read_that_finds_nothing_gives_back_the_unused_buffers_past_a_mib() {
        // Ten reads held, then all dropped: nine buffers kept, all unused.
        let room = 256 * 1024;
        let (_, mut shelf) = reads_with_messages_held(10, 10, room);
        assert_eq!(shelf.census(), (9, 9));
        shelf.tidy();
        // Exactly a MiB of them stays.
        assert_eq!(MAX_SPARE_BYTES / room, 4);
        assert_eq!(shelf.census(), (4, 4));
    }

    #[test]
    fn tidying_keeps_the_buffers_whose_messages_are_held() {
        let mut shelf = ReadShelf::default();
        let mut buf = BytesMut::new();
        let mut held = Vec::new();
        for round in 0..10u8 {
            shelf.reserve(&mut buf, ROOM);
            held.push(read_four(&mut buf, ROOM, round));
        }
        shelf.tidy();
        assert_eq!(shelf.census(), (9, 0));
        drop(held);
    }

    #[test]
    fn one_message_kept_long_stops_neither_reuse_nor_the_spare_bound() {
        let mut shelf = ReadShelf::default();
        let mut buf = BytesMut::new();
        // The first read's first message is kept for good; the rest of each
        // read is dropped after the next read.
        shelf.reserve(&mut buf, ROOM);
        let kept = read_four(&mut buf, ROOM, 0).swap_remove(0);
        let mut buffers = HashSet::new();
        let mut previous = Vec::new();
        for round in 1..50u8 {
            shelf.reserve(&mut buf, ROOM);
            buffers.insert(buf.as_ptr() as usize);
            let dropped = std::mem::replace(&mut previous, read_four(&mut buf, ROOM, round));
            for message in dropped {
                assert!(message.iter().all(|&b| b == round - 1), "a held message was read over");
            }
        }
        // Two buffers go round behind the one the kept message holds.
        assert_eq!(buffers.len(), 2);
        assert!(kept.iter().all(|&b| b == 0));
    }

    #[test]
    fn unused_buffers_behind_a_held_one_are_given_back_past_a_mib_too() {
        let room = 256 * 1024;
        let mut shelf = ReadShelf::default();
        let mut buf = BytesMut::new();
        shelf.reserve(&mut buf, room);
        let kept = read_four(&mut buf, room, 0).swap_remove(0);
        let mut held = Vec::new();
        for round in 1..=10u8 {
            shelf.reserve(&mut buf, room);
            held.push(read_four(&mut buf, room, round));
        }
        drop(held);
        // The first buffer (held) and nine unused ones behind it.
        assert_eq!(shelf.census(), (10, 9));
        shelf.tidy();
        assert_eq!(shelf.census(), (5, 4));
        drop(kept);
    }

    #[test]
    fn a_reuse_also_gives_back_the_spare_buffers_past_a_mib() {
        // Nine unused buffers of 256 KiB, and no read that finds nothing.
        let room = 256 * 1024;
        let (_, mut shelf) = reads_with_messages_held(10, 10, room);
        assert_eq!(shelf.census(), (9, 9));
        let mut buf = BytesMut::new();
        shelf.reserve(&mut buf, room);
        // Four spare kept, and one of them taken for this read.
        assert_eq!(shelf.census(), (3, 3));
    }

    #[test]
    fn at_most_max_shelved_buffers_are_kept_however_many_messages_are_held() {
        let (_, mut shelf) = reads_with_messages_held(MAX_SHELVED + 1, usize::MAX, 4);
        // Every read but the last left a buffer: exactly the bound.
        assert_eq!(shelf.census().0, MAX_SHELVED);
        let (_, mut shelf) = reads_with_messages_held(MAX_SHELVED + 2, usize::MAX, 4);
        assert_eq!(shelf.census().0, MAX_SHELVED);
    }

    #[test]
    fn a_buffer_the_shelf_did_not_allocate_is_not_kept() {
        let mut shelf = ReadShelf::default();
        let mut buf = BytesMut::with_capacity(ROOM);
        let held = read_four(&mut buf, ROOM, 1);
        shelf.reserve(&mut buf, ROOM);
        assert_eq!(shelf.census(), (0, 0));
        // One that grew by itself has left the shelf's allocation too.
        let held_too = read_four(&mut buf, ROOM, 2);
        buf.reserve(2 * ROOM);
        shelf.reserve(&mut buf, 4 * ROOM);
        assert_eq!(shelf.census(), (0, 0));
        drop((held, held_too));
    }
}
