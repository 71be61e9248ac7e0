//! Read buffers used again once the application has dropped every frame
//! read into them.
//!
//! Frames are split off the read buffer, never copied, so a buffer read
//! full stays allocated until the application drops its last frame, and the
//! next read needs another. Through the allocator alone, a run of 64 KiB
//! frames on a 2-worker runtime (the reader on one thread, the frames
//! dropped on another) faulted in most pages it received into: each fresh
//! quarter-MiB buffer came from memory the allocator had given back to the
//! kernel, and the kernel's copy into it took a fault per 4 KiB (about 200k
//! in 2 seconds, most of the receiver's kernel time beside the copy).
//! Reading into a spent buffer whose frames the application has dropped
//! reads into memory already mapped: in that run, two reads in three found
//! one (the current buffer or a kept one), and the faults halved.

use bytes::BytesMut;

/// Spent buffers kept at most, beside the one being read into: enough to
/// cover the frames the application has not yet dropped in a steady run.
pub(crate) const SPENT_BUFFERS: usize = 3;

/// A connection's spent read buffers, for reads between large frames.
///
/// It keeps only buffers that it allocated itself, whose size it knows, so
/// that what it keeps is bounded: [`SPENT_BUFFERS`] buffers of at most the
/// room asked of [`SpentBuffers::renew`].
#[derive(Default)]
pub(crate) struct SpentBuffers {
    /// Spent buffers, emptied; each may still share its allocation with
    /// frames the application holds. Oldest first.
    kept: Vec<BytesMut>,
    /// Whether the buffer being read into is one this pool allocated (its
    /// allocation no larger than the room it was made for).
    current_is_ours: bool,
}

impl SpentBuffers {
    /// Gives `read_buf` capacity for `room` bytes, what it holds (the start
    /// of a length prefix, at most) included: in place if the
    /// application has dropped every frame read into it, else in a kept
    /// buffer it has dropped every frame of, else in a new one. A spent
    /// buffer of this pool's is kept for later, the oldest let go past
    /// [`SPENT_BUFFERS`].
    pub(crate) fn renew(&mut self, read_buf: &mut BytesMut, room: usize) {
        if read_buf.try_reclaim(room.saturating_sub(read_buf.len())) {
            return;
        }
        let next = match self.kept.iter_mut().position(|kept| kept.try_reclaim(room)) {
            Some(index) => self.kept.remove(index),
            None => BytesMut::with_capacity(room.max(read_buf.len())),
        };
        let mut spent = std::mem::replace(read_buf, next);
        read_buf.extend_from_slice(&spent);
        if self.current_is_ours {
            spent.clear();
            if self.kept.len() == SPENT_BUFFERS {
                self.kept.remove(0);
            }
            self.kept.push(spent);
        }
        self.current_is_ours = true;
    }

    /// The read buffer was sized by other means: it may be another
    /// allocation now, of a size this pool does not know.
    pub(crate) fn current_sized_elsewhere(&mut self) {
        self.current_is_ours = false;
    }

    /// Lets go of every kept buffer: reads have no use for them now.
    pub(crate) fn clear(&mut self) {
        self.kept = Vec::new();
        self.current_is_ours = false;
    }

    /// Buffers kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: usize = 256 * 1024;

    /// Reads `frames` frames of `ROOM / frames` bytes into `read_buf` and
    /// splits them off, as the reader does.
    fn fill_and_split(read_buf: &mut BytesMut, frames: usize) -> Vec<bytes::Bytes> {
        let frame = ROOM / frames;
        (0..frames)
            .map(|i| {
                read_buf.extend_from_slice(&vec![i as u8; frame]);
                read_buf.split_to(frame).freeze()
            })
            .collect()
    }

    #[test]
    fn a_buffer_whose_frames_are_dropped_is_read_into_again() {
        let mut pool = SpentBuffers::default();
        let mut read_buf = BytesMut::new();
        pool.renew(&mut read_buf, ROOM);
        let first = read_buf.as_ptr();
        let held = fill_and_split(&mut read_buf, 4);

        // The application still holds the frames: a new buffer, the first
        // kept.
        pool.renew(&mut read_buf, ROOM);
        assert_ne!(read_buf.as_ptr(), first);
        assert_eq!(pool.kept(), 1);
        let second = read_buf.as_ptr();
        let held_too = fill_and_split(&mut read_buf, 4);

        // It drops the first buffer's frames: the next read goes there, and
        // the second buffer is kept in its place.
        drop(held);
        pool.renew(&mut read_buf, ROOM);
        assert_eq!(read_buf.as_ptr(), first);
        assert_eq!(pool.kept(), 1);
        assert!(read_buf.capacity() >= ROOM);

        // The frames handed out are intact.
        assert!(held_too.iter().enumerate().all(|(i, frame)| frame.iter().all(|&b| b == i as u8)));
        drop(held_too);
        let _ = fill_and_split(&mut read_buf, 4);
        pool.renew(&mut read_buf, ROOM);
        assert!(read_buf.as_ptr() == first || read_buf.as_ptr() == second);
    }

    #[test]
    fn the_start_of_a_frame_moves_with_the_buffer() {
        let mut pool = SpentBuffers::default();
        let mut read_buf = BytesMut::new();
        pool.renew(&mut read_buf, ROOM);
        // Three frames split off, and the first bytes of a fourth read.
        let held: Vec<_> = (0..3)
            .map(|_| {
                read_buf.extend_from_slice(&[7; ROOM / 4]);
                read_buf.split_to(ROOM / 4)
            })
            .collect();
        read_buf.extend_from_slice(b"next frame");
        let inside = read_buf.as_ptr();
        pool.renew(&mut read_buf, ROOM);
        assert_eq!(&read_buf[..], b"next frame");
        assert_ne!(read_buf.as_ptr(), inside, "the frames held share that buffer");
        assert!(read_buf.capacity() >= ROOM);
        drop(held);
    }

    #[test]
    fn at_most_spent_buffers_are_kept_and_none_of_unknown_size() {
        let mut pool = SpentBuffers::default();
        // A buffer the pool did not make (its size unknown) is not kept.
        let mut read_buf = BytesMut::with_capacity(ROOM);
        let _unknown = fill_and_split(&mut read_buf, 1);
        pool.renew(&mut read_buf, ROOM);
        assert_eq!(pool.kept(), 0);

        let mut held = Vec::new();
        for round in 1..=SPENT_BUFFERS + 2 {
            held.push(fill_and_split(&mut read_buf, 2));
            pool.renew(&mut read_buf, ROOM);
            assert_eq!(pool.kept(), round.min(SPENT_BUFFERS), "after {round} buffers spent");
        }

        // Sized elsewhere: its buffer is not kept.
        pool.current_sized_elsewhere();
        held.push(fill_and_split(&mut read_buf, 2));
        pool.renew(&mut read_buf, ROOM);
        assert_eq!(pool.kept(), SPENT_BUFFERS);

        pool.clear();
        assert_eq!(pool.kept(), 0);
    }
}
