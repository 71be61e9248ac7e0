//! The reader's buffer: how much room each read gets, so that frames are
//! read in place (split off, never copied) and a large buffer is not kept.

use bytes::BytesMut;
use smartsock_framing::LENGTH_PREFIX_LEN;

use crate::read_shelf::ReadShelf;

/// Bytes the reader asks the OS for at once: big reads, many frames each.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// The read buffer of a new connection, before any traffic: HELLO and
/// HEARTBEATs fit, so an idle connection never needs more. The first read
/// that fills it makes the connection read [`READ_CHUNK`]s.
pub(crate) const INITIAL_READ_BUFFER: usize = 512;
/// Buffer capacity kept between large frames or batches; more is given back.
pub(crate) const MAX_KEPT_BUFFER: usize = 1024 * 1024;
/// A frame this long or longer on the wire (length prefix included) is
/// large: a read that ends inside one leaves part of it to be copied when
/// the buffer has no room for the rest.
const LARGE_FRAME: usize = 16 * 1024;
/// A frame announced no longer than one that the connection completed
/// before, and at most this long on the wire, gets room for all of it as
/// soon as its length is read; a longer one, room that grows with what
/// arrives.
const MAX_TRUSTED_FRAME: usize = 2 * MAX_KEPT_BUFFER;
/// About what a read between large frames asks for: as many whole frames of
/// the last large frame's length as fit. Frames longer than this are read
/// as they arrive (see [`ReadRoom::make_room`]).
const LARGE_READ: usize = 256 * 1024;

/// A connection's rule for the room its read buffer gets before each read.
pub(crate) struct ReadRoom {
    /// The room a read gets between small frames: small while the
    /// connection is quiet, [`READ_CHUNK`] once a read has filled its room.
    chunk: usize,
    /// Whether the buffer has grown past [`MAX_KEPT_BUFFER`].
    oversized: bool,
    /// The envelope of the frame in progress at the last call, and its
    /// bytes buffered then: the next call sees whether it completed.
    in_progress: Option<(usize, usize)>,
    /// The wire length of the frame last seen in progress and completed,
    /// if at most [`MAX_TRUSTED_FRAME`]; 0 otherwise. A frame announced no
    /// longer gets all its room at once, and while it is 16 to 256 KiB,
    /// reads between frames are sized and cut in whole frames of it.
    trusted: usize,
    /// Buffers of the reads between large frames, for reuse once their
    /// messages are dropped; given back when the run ends or the peer
    /// goes quiet.
    shelf: ReadShelf,
}

impl ReadRoom {
    pub(crate) fn new() -> Self {
        Self {
            chunk: INITIAL_READ_BUFFER,
            oversized: false,
            in_progress: None,
            trusted: 0,
            shelf: ReadShelf::default(),
        }
    }

    /// The frame length that reads between frames follow: the trusted
    /// one, if of 16 to 256 KiB; 0 otherwise.
    fn whole_frame(&self) -> usize {
        if (LARGE_FRAME..=LARGE_READ).contains(&self.trusted) { self.trusted } else { 0 }
    }

    /// A read found nothing to read (it waits for the peer): buffers kept
    /// for reuse that nobody uses are given back past a small reserve.
    pub(crate) fn nothing_to_read(&mut self) {
        self.shelf.tidy();
    }

    /// A read brought control frames and no message (a HEARTBEAT, say):
    /// the peer has gone quiet, and the buffers kept for reuse go back.
    pub(crate) fn quiet(&mut self) {
        self.shelf.clear();
    }

    /// A read took all the room it had: the peer has more to say than
    /// fits, so reads between frames are big from now on.
    pub(crate) fn filled(&mut self) {
        self.chunk = READ_CHUNK;
    }

    /// Makes room in the read buffer for the next read; `envelope` is the
    /// codec's frame in progress, if its length prefix has been read, and
    /// `messages_wait` whether decoded messages wait for room in the
    /// inbound queue.
    ///
    /// Inside a large frame, the buffer grows toward the frame's size with
    /// what has arrived (at most doubling), so it is read in place with few
    /// copies while memory follows the bytes received, not the length
    /// announced; but a frame no longer than one this connection completed
    /// before (up to 2 MiB) gets room for all of it at once (unless
    /// messages wait), so that a run of large frames copies at most what
    /// one read brought of each before its length was known (at 1 MiB,
    /// doubling copied about a frame's worth of each). Once a buffer has
    /// grown past [`MAX_KEPT_BUFFER`], it is given back as soon as what is
    /// buffered and the frame in progress fit a small one again.
    ///
    /// Between frames, a read gets `chunk` bytes of room (a quarter of it at
    /// least). While the frame last completed was of 16 to 256 KiB, it gets
    /// room for a whole number of frames of that length instead (about 256
    /// KiB, and at least one frame), and each read is told to stop at the
    /// end of a frame (the bytes it may take are returned; otherwise
    /// `usize::MAX`): a run of equal frames then fills each buffer exactly,
    /// and no read ends inside a frame for want of room, whose start would
    /// be copied into the next buffer (at 64 KiB, most of each frame was
    /// copied so). Both rules take their length from a frame that arrived
    /// whole, never from one only announced.
    pub(crate) fn make_room(
        &mut self,
        read_buf: &mut BytesMut,
        envelope: Option<usize>,
        messages_wait: bool,
    ) -> usize {
        self.learn(envelope, read_buf.len());
        let whole_frame = self.whole_frame();
        if whole_frame == 0 {
            self.shelf.clear();
        }
        self.oversized |= read_buf.capacity() > MAX_KEPT_BUFFER;
        let needed = envelope.map_or(read_buf.len(), |envelope| envelope.max(read_buf.len()));
        if self.oversized && needed < READ_CHUNK {
            // One large frame must not pin its buffer for the connection's
            // whole life: neither the buffer itself, nor (once the frame is
            // split off) its allocation through the small view left after
            // the frame, whose capacity no longer shows how large that
            // allocation is.
            let mut fresh = BytesMut::with_capacity(READ_CHUNK);
            fresh.extend_from_slice(read_buf);
            *read_buf = fresh;
            self.oversized = false;
            return usize::MAX;
        }
        let spare = read_buf.capacity() - read_buf.len();
        match envelope {
            Some(envelope) if envelope > read_buf.len() => {
                let missing = envelope - read_buf.len();
                // Not while messages wait for room: reads are then held to
                // the look-ahead bound, and the room would only sit there.
                let step = if !messages_wait && envelope.saturating_add(LENGTH_PREFIX_LEN) <= self.trusted {
                    missing
                } else {
                    missing.min(read_buf.len().max(READ_CHUNK))
                };
                if spare < step {
                    read_buf.reserve(step);
                }
            }
            _ => {
                if whole_frame == 0 {
                    if spare < self.chunk / 4 {
                        read_buf.reserve(self.chunk);
                    }
                } else if spare < whole_frame {
                    // The buffer's earlier frames are still held (it would
                    // have room otherwise): a kept buffer, or a new one.
                    self.shelf.reserve(read_buf, whole_frame * (LARGE_READ / whole_frame));
                }
            }
        }
        self.oversized |= read_buf.capacity() > MAX_KEPT_BUFFER;
        self.read_limit(read_buf, envelope)
    }

    /// Notes whether the frame seen in progress at the last call is over:
    /// the codec is between frames now, or in a frame of another length or
    /// with fewer bytes buffered (a frame's bytes only grow until it is
    /// split off). Its length is then trusted, if short enough.
    fn learn(&mut self, envelope: Option<usize>, buffered: usize) {
        if let Some((previous, buffered_then)) = self.in_progress {
            if envelope.is_none_or(|envelope| envelope != previous || buffered < buffered_then) {
                // Saturating: `max_frame_length` may be up to `u32::MAX`,
                // past `usize` on a 32-bit target once the prefix is added.
                let wire = previous.saturating_add(LENGTH_PREFIX_LEN);
                self.trusted = if wire <= MAX_TRUSTED_FRAME { wire } else { 0 };
            }
        }
        self.in_progress = envelope.map(|envelope| (envelope, buffered));
    }

    /// The most the next read may take: up to the end of the frame in
    /// progress (between frames, of the frame whose length prefix has begun
    /// to arrive, if any), then whole frames of its length (or the followed
    /// one), or the buffer's end inside a frame still growing; unlimited
    /// when neither is of 16 to 256 KiB. A length only announced may cut a
    /// read short, never size a buffer: so the first frame of a run already
    /// ends its read at its end.
    fn read_limit(&self, read_buf: &BytesMut, envelope: Option<usize>) -> usize {
        let frame = match envelope.map(|envelope| envelope.saturating_add(LENGTH_PREFIX_LEN)) {
            Some(wire) if (LARGE_FRAME..=LARGE_READ).contains(&wire) => wire,
            _ => self.whole_frame(),
        };
        if frame == 0 {
            return usize::MAX;
        }
        let missing = match envelope {
            Some(envelope) => envelope.saturating_sub(read_buf.len()),
            None => (frame - read_buf.len() % frame) % frame,
        };
        let spare = read_buf.capacity() - read_buf.len();
        match spare.checked_sub(missing) {
            Some(after) if missing > 0 || after >= frame => missing + after - after % frame,
            _ => spare,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The read buffer's size, through the read loop's own steps: decode what
    //! is buffered, size the buffer, then read into its spare capacity (as
    //! `read_buf` does) no more than what has arrived.

    use smartsock_framing::{Codec, Frame};
    use tokio_util::codec::Decoder;

    use super::*;

    const MIB: usize = 1024 * 1024;
    /// The default maximum envelope.
    const ANNOUNCED: usize = 16 * MIB;
    /// Bytes the simulated socket hands over per read at most, by default.
    const ARRIVAL: usize = 256 * 1024;

    /// A codec and a read buffer of `READ_CHUNK` from which a first small
    /// frame was decoded, as after any handshake: from then on the buffer
    /// shares its allocation with what it hands out.
    fn after_handshake() -> (Codec, BytesMut) {
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(&[0, 0, 0, 2, 0x03, 1]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
        (codec, buf)
    }

    /// A DATA frame of `envelope` bytes (type byte included) on the wire.
    fn data_frame(envelope: usize) -> Vec<u8> {
        let mut wire = u32::try_from(envelope).unwrap().to_be_bytes().to_vec();
        wire.push(0x03);
        wire.extend((0..envelope - 1).map(|i| (i % 251) as u8));
        wire
    }

    /// The read loop over `wire[..available]`, resuming at `sent`: decodes,
    /// sizes, reads, until every available byte is in. Returns the frames
    /// decoded and the largest capacity the buffer had.
    fn run(
        codec: &mut Codec,
        buf: &mut BytesMut,
        wire: &[u8],
        sent: &mut usize,
        available: usize,
    ) -> (Vec<Frame>, usize) {
        let run = run_in_reads_of(ARRIVAL, &mut busy_room(), codec, buf, wire, sent, available);
        (run.frames, run.largest)
    }

    /// The room of a connection that has been busy.
    fn busy_room() -> ReadRoom {
        let mut room = ReadRoom::new();
        room.filled();
        room
    }

    /// What one run of the read loop saw.
    struct Run {
        frames: Vec<Frame>,
        /// The largest capacity the buffer had.
        largest: usize,
        /// Bytes received once and copied into a new buffer after (the
        /// start of a frame, when the buffer had no room for the rest).
        copied: usize,
        /// Buffers the run moved to, each a new allocation.
        buffers: usize,
    }

    /// [`run`], in reads of at most `arrival` bytes, with `room`'s state.
    fn run_in_reads_of(
        arrival: usize,
        room: &mut ReadRoom,
        codec: &mut Codec,
        buf: &mut BytesMut,
        wire: &[u8],
        sent: &mut usize,
        available: usize,
    ) -> Run {
        let mut run = Run { frames: Vec::new(), largest: buf.capacity(), copied: 0, buffers: 0 };
        loop {
            while let Some(frame) = codec.decode(buf).expect("well-formed") {
                run.frames.push(frame);
            }
            let before = buf.as_ptr();
            let most = room.make_room(buf, codec.envelope_in_progress(), false);
            assert!(most > 0, "a read of 0 bytes is the peer's end");
            if buf.as_ptr() != before {
                run.copied += buf.len();
                run.buffers += 1;
            }
            run.largest = run.largest.max(buf.capacity());
            if *sent == available {
                return run;
            }
            if buf.capacity() == buf.len() {
                // What `read_buf` does with no spare capacity.
                buf.reserve(64);
            }
            let n = (buf.capacity() - buf.len()).min(available - *sent).min(arrival).min(most);
            buf.extend_from_slice(&wire[*sent..*sent + n]);
            *sent += n;
            run.largest = run.largest.max(buf.capacity());
        }
    }

    #[test]
    fn after_one_16_mib_frame_the_read_buffer_lets_go_of_the_frames_memory() {
        let wire = data_frame(ANNOUNCED);
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut sent = 0;
        let (frames, largest) = run(&mut codec, &mut buf, &wire, &mut sent, wire.len());
        let [Frame::Data(payload)] = &frames[..] else { panic!("expected one DATA, got {}", frames.len()) };
        assert_eq!(payload.len(), ANNOUNCED - 1);
        assert!(payload[..] == wire[5..], "the payload arrived changed");
        // Read in place: the buffer grew to about the frame, not far past it.
        assert!(largest <= 2 * ANNOUNCED, "the buffer grew to {} MiB", largest / MIB);

        // Idle now: the buffer left for the next frames is small, and is not
        // a view into the frame's allocation (which it would keep alive for
        // the connection's life once the application drops the payload).
        assert!(buf.capacity() <= MAX_KEPT_BUFFER, "kept {} KiB", buf.capacity() / 1024);
        let payload_end = payload.as_ptr() as usize + payload.len();
        assert_ne!(buf.as_ptr() as usize, payload_end, "the read buffer still points into the 16 MiB frame");
    }

    #[test]
    fn after_a_large_frame_and_the_start_of_a_small_one_the_buffer_is_given_back_too() {
        let mut wire = data_frame(4 * MIB);
        // The next frame's first bytes came in the same read.
        wire.extend_from_slice(&[0, 0, 0, 6, 0x03, b'n']);
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut sent = 0;
        let (frames, _) = run(&mut codec, &mut buf, &wire, &mut sent, wire.len());
        let [Frame::Data(payload)] = &frames[..] else { panic!("expected one DATA, got {}", frames.len()) };
        assert!(buf.capacity() <= MAX_KEPT_BUFFER, "kept {} KiB", buf.capacity() / 1024);
        assert_ne!(buf.as_ptr() as usize, payload.as_ptr() as usize + payload.len());
        // The partial frame carried over intact.
        assert_eq!(codec.envelope_in_progress(), Some(6));
        assert_eq!(&buf[..], &[0x03, b'n']);
    }

    #[test]
    fn a_frame_announced_at_16_mib_grows_the_buffer_with_what_arrives_not_with_what_was_announced() {
        let wire = data_frame(ANNOUNCED);
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut sent = 0;
        for arrived in [5, 64 * 1024, 256 * 1024, MIB, 4 * MIB, ANNOUNCED - 1] {
            // Up to `arrived` bytes of the body, then the peer holds still
            // (the last step holds one byte short of the frame).
            let (frames, largest) = run(&mut codec, &mut buf, &wire, &mut sent, 4 + arrived);
            assert!(frames.is_empty());
            assert_eq!(codec.envelope_in_progress(), Some(ANNOUNCED));
            // Proportional to what arrived: a reserve step is at most what is
            // buffered, and the allocation at most doubles on top of it.
            let bound = 4 * arrived.max(READ_CHUNK);
            assert!(
                largest <= bound,
                "with {arrived} bytes of a 16 MiB frame arrived the buffer reached {largest} (bound {bound})"
            );
        }
        // The last byte completes it, intact.
        let (frames, _) = run(&mut codec, &mut buf, &wire, &mut sent, wire.len());
        let [Frame::Data(payload)] = &frames[..] else { panic!("expected one DATA, got {}", frames.len()) };
        assert!(payload[..] == wire[5..], "the payload arrived changed");
    }

    #[test]
    fn after_a_frame_just_over_a_mib_the_small_view_left_behind_does_not_keep_its_allocation() {
        // Sizes and read lengths where the allocation ends up just over the
        // frame: the view left after it has under 1 MiB of capacity, which
        // alone does not show that it holds a 2 MiB allocation alive.
        for envelope in [MIB + 3, MIB + 37 * 1024 + 3, MIB + 74 * 1024 + 3] {
            let wire = data_frame(envelope);
            let (mut codec, mut buf) = after_handshake();
            let mut sent = 0;
            let Run { frames, .. } = run_in_reads_of(
                16 * 1024,
                &mut busy_room(),
                &mut codec,
                &mut buf,
                &wire,
                &mut sent,
                wire.len(),
            );
            let [Frame::Data(payload)] = &frames[..] else {
                panic!("expected one DATA, got {}", frames.len())
            };
            assert_ne!(
                buf.as_ptr() as usize,
                payload.as_ptr() as usize + payload.len(),
                "after a frame of {envelope} bytes the read buffer still points into its allocation"
            );
        }
    }

    /// `count` DATA frames of `envelope` bytes each, back to back, read
    /// [`after_handshake`]. Returns what the run saw, the room's state and
    /// the buffer left.
    fn run_of_frames(envelope: usize, count: usize, arrival: usize) -> (Run, ReadRoom, BytesMut) {
        let frame = data_frame(envelope);
        let wire: Vec<u8> = (0..count).flat_map(|_| frame.iter().copied()).collect();
        let (mut codec, mut buf) = after_handshake();
        let mut room = busy_room();
        let mut sent = 0;
        let run = run_in_reads_of(arrival, &mut room, &mut codec, &mut buf, &wire, &mut sent, wire.len());
        assert_eq!(run.frames.len(), count);
        for decoded in &run.frames {
            let Frame::Data(payload) = decoded else { panic!("expected DATA, got {decoded:?}") };
            assert!(payload[..] == frame[5..], "a payload arrived changed");
        }
        (run, room, buf)
    }

    #[test]
    fn a_run_of_64_kib_frames_is_read_in_place_once_the_first_has_shown_their_length() {
        let envelope = 64 * 1024 + 1;
        let wire_len = LENGTH_PREFIX_LEN + envelope;
        // Reads as large as the room, a quarter MiB, a length that is no
        // multiple of the frame's, and one that stops inside the next
        // frame's length prefix.
        for arrival in [usize::MAX, ARRIVAL, 100_000, wire_len + 2] {
            let (run, _, _) = run_of_frames(envelope, 40, arrival);
            // Only the first frame, whose length was not known when the read
            // that ended inside it was sized, is copied (part of it).
            assert!(
                run.copied < wire_len,
                "reads of {arrival} bytes: {} KiB of 40 frames of 64 KiB were copied",
                run.copied / 1024
            );
            assert!(run.largest <= LARGE_READ, "the buffer reached {} KiB", run.largest / 1024);
            // Each buffer after the first is filled with whole frames, also
            // after a read stopped inside a length prefix (without counting
            // the prefix begun, two buffers more).
            let per_buffer = LARGE_READ / wire_len;
            assert!(
                run.buffers <= 40_usize.div_ceil(per_buffer) + 1,
                "reads of {arrival} bytes: {} buffers for 40 frames, {per_buffer} to a buffer",
                run.buffers
            );
        }
    }

    #[test]
    fn the_room_between_frames_follows_frames_of_16_to_256_kib_only() {
        for (envelope, followed) in [
            (LARGE_FRAME - LENGTH_PREFIX_LEN - 1, false),
            (LARGE_FRAME - LENGTH_PREFIX_LEN, true),
            (LARGE_READ - LENGTH_PREFIX_LEN, true),
            (LARGE_READ - LENGTH_PREFIX_LEN + 1, false),
        ] {
            let (run, room, _) = run_of_frames(envelope, 12, ARRIVAL);
            let expected = if followed { LENGTH_PREFIX_LEN + envelope } else { 0 };
            assert_eq!(room.whole_frame(), expected, "after frames of {envelope} bytes");
            // Room for a whole number of frames, not more than about 256 KiB.
            assert!(run.largest <= LARGE_READ.max(2 * (LENGTH_PREFIX_LEN + envelope)));
        }
    }

    #[test]
    fn a_quiet_connection_gives_back_every_kept_buffer_but_keeps_its_run() {
        let (run, mut room, _) = run_of_frames(64 * 1024 + 1, 12, ARRIVAL);
        assert!(room.shelf.census().0 >= 2);
        room.quiet();
        assert_eq!(room.shelf.census(), (0, 0));
        // Still in the run: the next read is still cut in whole frames.
        assert_eq!(room.whole_frame(), LENGTH_PREFIX_LEN + 64 * 1024 + 1);
        drop(run);
    }

    #[test]
    fn small_frames_after_large_ones_bring_back_the_usual_room() {
        let (run, mut room, _) = run_of_frames(64 * 1024 + 1, 12, ARRIVAL);
        assert_eq!(room.whole_frame(), LENGTH_PREFIX_LEN + 64 * 1024 + 1);
        // Every buffer the run moved on from is kept for reuse (their
        // messages are all still held), but the first, which the shelf did
        // not allocate.
        assert!(run.buffers >= 3);
        assert_eq!(room.shelf.census(), (run.buffers - 1, 0));
        drop(run);
        // The next small frame caught in progress (its prefix read, not its
        // body): the read is held to its end, as to a large frame's...
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0x03][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(room.make_room(&mut buf, codec.envelope_in_progress(), false), 5);
        // ...and once it has arrived whole, reads go back to the usual room.
        buf.extend_from_slice(b"hello");
        assert!(codec.decode(&mut buf).unwrap().is_some());
        assert_eq!(room.make_room(&mut buf, codec.envelope_in_progress(), false), usize::MAX);
        assert_eq!(room.whole_frame(), 0);
        // The run is over: its buffers go back.
        assert_eq!(room.shelf.census(), (0, 0));
        // Between frames again, an empty buffer gets a chunk, not a quarter MiB.
        let mut empty = BytesMut::new();
        room.make_room(&mut empty, None, false);
        assert_eq!(empty.capacity(), READ_CHUNK);
    }

    #[test]
    fn a_run_of_1_mib_frames_copies_at_most_one_read_of_each_after_the_first() {
        let envelope = MIB + 1;
        let count = 10;
        let (run, room, _) = run_of_frames(envelope, count, ARRIVAL);
        assert_eq!(room.trusted, LENGTH_PREFIX_LEN + envelope);
        // The first frame's buffer grows with what arrives (copying up to
        // twice the frame), and the read that completes it may bring a
        // read's worth of the second; each frame after that copies at most
        // the chunk read before its length was known. Growing each frame
        // with what arrives copied about 1.7 MiB of every one.
        let bound = 2 * envelope + ARRIVAL + (count - 2) * READ_CHUNK;
        assert!(
            run.copied <= bound,
            "{} KiB copied for {count} frames of 1 MiB (bound {} KiB)",
            run.copied / 1024,
            bound / 1024
        );
    }

    /// `room` after `make_room` for a frame of `envelope` bytes whose
    /// length prefix and first 5 bytes have arrived; returns the buffer.
    fn room_for_a_frame_begun(room: &mut ReadRoom, envelope: usize, messages_wait: bool) -> BytesMut {
        let wire = data_frame(envelope);
        let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
        let mut buf = BytesMut::from(&wire[..LENGTH_PREFIX_LEN + 5]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(codec.envelope_in_progress(), Some(envelope));
        room.make_room(&mut buf, codec.envelope_in_progress(), messages_wait);
        buf
    }

    #[test]
    fn only_a_frame_no_longer_than_one_completed_gets_all_its_room_at_once_and_not_while_messages_wait() {
        let completed = 300 * 1024 + 1;
        let (_, mut room, _) = run_of_frames(completed, 3, ARRIVAL);
        assert_eq!(room.trusted, LENGTH_PREFIX_LEN + completed);
        // As long as the frame completed: room for all of it.
        let buf = room_for_a_frame_begun(&mut room, completed, false);
        assert!(buf.capacity() - buf.len() >= completed - 5, "room for {} of {completed}", buf.capacity());
        // But not while messages wait: reads are held to the look-ahead.
        let buf = room_for_a_frame_begun(&mut room, completed, true);
        assert!(
            buf.capacity() <= 2 * READ_CHUNK,
            "{} KiB for 5 bytes while messages wait",
            buf.capacity() / 1024
        );
        // Longer: room that follows what has arrived, not the 16 MiB announced.
        let buf = room_for_a_frame_begun(&mut room, ANNOUNCED, false);
        assert!(
            buf.capacity() <= 2 * READ_CHUNK,
            "{} KiB for 5 bytes of a 16 MiB frame",
            buf.capacity() / 1024
        );
    }

    #[test]
    fn frames_are_trusted_up_to_2_mib_on_the_wire_and_their_buffers_given_back() {
        for (envelope, trusted) in [
            (MAX_TRUSTED_FRAME - LENGTH_PREFIX_LEN, true),
            (MAX_TRUSTED_FRAME - LENGTH_PREFIX_LEN + 1, false),
        ] {
            let (run, room, buf) = run_of_frames(envelope, 3, ARRIVAL);
            let expected = if trusted { LENGTH_PREFIX_LEN + envelope } else { 0 };
            assert_eq!(room.trusted, expected, "after frames of {envelope} bytes");
            // Either way, the frames' buffers are given back after them.
            let Some(Frame::Data(last)) = run.frames.last() else { panic!("expected DATA") };
            assert!(buf.capacity() <= MAX_KEPT_BUFFER, "kept {} KiB", buf.capacity() / 1024);
            assert_ne!(buf.as_ptr() as usize, last.as_ptr() as usize + last.len());
        }
    }
}
