//! A connection's reader: reads big chunks, decodes every frame of a read,
//! hands messages and ACKs over in batches, and bounds what a peer can make
//! it hold or do.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use smartsock_framing::{Codec, Frame, MsgId, PeerId};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, sleep};
use tokio_util::codec::Decoder;
use tracing::{debug, trace, warn};

use crate::MAX_DURATION;
use crate::event::{DisconnectReason, DropReason, Event};
use crate::outbox::Outbox;
use crate::peer::{AckHandle, Incoming};
use crate::per_second::PerSecond;
use crate::shared::Shared;
use crate::stats::PeerCounters;

/// Bytes the reader asks the OS for at once: big reads, many frames each.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Frames decoded from one connection before it lets others run.
const MAX_FRAMES_PER_TURN: usize = 4096;
/// HEARTBEAT, extra HELLO and unknown-type frames one connection may send
/// in a second (an honest peer sends one HEARTBEAT per interval) before it
/// is closed as a flood.
pub const MAX_CONTROL_FRAMES_PER_SECOND: usize = 1024;
/// The read buffer of a new connection, before any traffic: HELLO and
/// HEARTBEATs fit, so an idle connection never needs more. The first read
/// that fills it makes the connection read [`READ_CHUNK`]s.
pub(crate) const INITIAL_READ_BUFFER: usize = 512;
/// Buffer capacity kept between large frames or batches; more is given back.
pub(crate) const MAX_KEPT_BUFFER: usize = 1024 * 1024;

/// What a message waiting for room in the inbound queue counts for against
/// [`TransportConfig::inbound_lookahead`](crate::TransportConfig::inbound_lookahead),
/// on top of its payload: its record, so that a flood of empty messages is
/// bounded as well as a few large ones.
pub const WAITING_MESSAGE_COST: usize = 128;

/// Reads big chunks and decodes every complete frame before reading again.
///
/// While the inbound queue is full, the messages that found no room wait
/// here, and reading goes on for what is behind them (ACKs, HEARTBEATs)
/// while what is held stays under `inbound_lookahead`: a socket whose
/// application stops taking messages must still hear the ACKs for its own.
pub(crate) async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    peer: PeerId,
    outbox: &Arc<Outbox>,
    counters: &PeerCounters,
    reader: &mut R,
    read_buf: &mut BytesMut,
) -> DisconnectReason {
    let config = &shared.config;
    let mut codec = Codec::builder().max_frame_length(config.max_frame_length).build();
    let mut liveness = Liveness::new(config.heartbeat_timeout, config.min_receive_rate, Instant::now());
    let deadline = sleep(config.heartbeat_timeout);
    tokio::pin!(deadline);
    let mut acks_dropped = 0u64;
    // Messages decoded and not yet in the inbound queue: those of the last
    // read, handed over in one go, and any that found the queue full.
    let mut waiting = VecDeque::new();
    // What `waiting` holds, counted as `inbound_lookahead` counts it.
    let mut waiting_bytes = 0usize;
    // Likewise the ACKs of one read, when a sink takes them.
    let mut acks = Vec::new();
    let mut unknown_acks = PerSecond::new(crate::MAX_UNKNOWN_ACKS_PER_SECOND, "ACKs for no pending message");
    let mut control_frames =
        PerSecond::new(MAX_CONTROL_FRAMES_PER_SECOND, "HEARTBEAT, HELLO or unknown frames");
    // Whether the read buffer has grown past what is kept between frames.
    let mut oversized = false;
    // The room a read gets between frames: an idle connection (HEARTBEATs
    // only) keeps its small first buffer; a busy one reads big chunks.
    let mut chunk = INITIAL_READ_BUFFER;
    // Since the liveness clock last looked: bytes arrived / a frame completed.
    let (mut bytes_arrived, mut frame_completed) = (false, false);
    // The peer's end was read: what is still in the buffer is decoded and
    // handed over (at the look-ahead's pace) before the reader returns.
    let mut ended = false;
    loop {
        // Looked up per read, not once: a sink installed after this
        // connection came up must get its ACKs too (the queue it replaces
        // is gone by then).
        let sink = shared.ack_sink.get();
        let mut malformed = None;
        let mut control = 0;
        let mut decoded = 0;
        let (mut messages, mut payload_bytes) = (0usize, 0usize);
        let mut received = false;
        // Every complete frame in the buffer is decoded.
        let mut drained = false;
        // Messages left waiting by the last offer: the queue is full, and
        // what is decoded now is look-ahead. It stops at the bound, so that
        // one read of tiny frames cannot pile up records past it.
        let blocked = !waiting.is_empty();
        loop {
            if decoded == MAX_FRAMES_PER_TURN || (blocked && waiting_bytes >= config.inbound_lookahead) {
                break;
            }
            decoded += 1;
            // The usual frames, whole DATA, DATA_REQ and (for a sink) ACK,
            // by the codec's shortcuts: no `Frame` made, no result to unwrap
            // (a quarter of the receiver's time on 64-byte messages).
            let incoming = if let Some(payload) = codec.next_whole_data(read_buf) {
                frame_completed = true;
                received = true;
                Incoming { peer, payload, request: None }
            } else if let Some((id, payload)) = codec.next_whole_request(read_buf) {
                frame_completed = true;
                received = true;
                Incoming { peer, payload, request: Some(ack_handle(outbox, id, config.ack_on_arrival)) }
            } else if let Some(id) = sink.and_then(|_| codec.next_whole_ack(read_buf)) {
                frame_completed = true;
                received = true;
                acks.push(id);
                continue;
            } else {
                let frame = match codec.decode(read_buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        drained = true;
                        break;
                    }
                    Err(e) => {
                        // What came before the bad frame is delivered first.
                        malformed = Some(DisconnectReason::Protocol(e.to_string()));
                        break;
                    }
                };
                frame_completed = true;
                received = true;
                match frame {
                    Frame::Data(payload) => Incoming { peer, payload, request: None },
                    Frame::DataReq { id, payload } => Incoming {
                        peer,
                        payload,
                        request: Some(ack_handle(outbox, id, config.ack_on_arrival)),
                    },
                    Frame::Ack(id) if sink.is_some() => {
                        acks.push(id);
                        continue;
                    }
                    Frame::Ack(id) => {
                        if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                            shared.acks.try_send((peer, id))
                        {
                            acks_dropped += 1;
                            if acks_dropped.is_power_of_two() {
                                warn!(acks_dropped, "ACK queue full: dropping ACKs (the sender will resend)");
                            }
                            shared.emit(Event::Dropped {
                                peer: Some(peer),
                                count: 1,
                                reason: DropReason::AckQueueFull,
                            });
                        }
                        continue;
                    }
                    Frame::Heartbeat => {
                        control += 1;
                        continue;
                    }
                    Frame::Hello { .. } => {
                        debug!("ignoring a second HELLO");
                        control += 1;
                        continue;
                    }
                    Frame::Unknown { kind, body } => {
                        trace!(kind, len = body.len(), "skipping a frame of unknown type");
                        control += 1;
                        continue;
                    }
                }
            };
            messages += 1;
            payload_bytes += incoming.payload.len();
            waiting_bytes += incoming.payload.len() + WAITING_MESSAGE_COST;
            waiting.push_back(incoming);
        }
        if received {
            // Counted once per read (a few atomic adds), not per message.
            counters.received(messages, payload_bytes, Instant::now());
        }
        if messages > 0 {
            // Before the messages are handed on: a reply sent as soon as one
            // is taken may go out from its sender's task.
            outbox.arm_direct();
        }
        // Registered by `offer` if messages are left waiting, so that the
        // application's next take wakes this reader.
        let room = shared.inbound.room();
        tokio::pin!(room);
        if !waiting.is_empty() {
            match shared.inbound.offer(&mut waiting, room.as_mut()) {
                Ok((moved, bytes)) => waiting_bytes -= bytes + moved * WAITING_MESSAGE_COST,
                Err(_) => return DisconnectReason::Closing,
            }
        }
        // ACKs are handed on before any wait for room: they may be what the
        // application above is waiting for.
        if let (Some(sink), false) = (sink, acks.is_empty()) {
            let unknown = sink.acknowledged(peer, &acks);
            acks.clear();
            if let Err(reason) = unknown_acks.add(unknown) {
                return reason;
            }
        }
        if let Some(reason) = malformed {
            return if shared.inbound.push_batch(&mut waiting).await {
                reason
            } else {
                DisconnectReason::Closing
            };
        }
        if let Err(reason) = control_frames.add(control) {
            return reason;
        }
        if decoded == MAX_FRAMES_PER_TURN {
            // A bounded amount of work per turn: a peer that floods tiny
            // frames lets the other connections (and the application) run
            // in between. What is left in the buffer is decoded next turn.
            tokio::task::yield_now().await;
            continue;
        }
        let progress = buffered_bytes(&codec, read_buf);
        if std::mem::take(&mut bytes_arrived) {
            liveness.heard(Instant::now(), std::mem::take(&mut frame_completed), progress);
        }
        if !waiting.is_empty() && waiting_bytes + progress >= config.inbound_lookahead {
            // At the look-ahead bound: this connection stops reading and TCP
            // pushes back on the peer. Nothing is dropped, and the time
            // spent here is ours, not the peer's silence.
            room.await;
            liveness.resumed(Instant::now(), progress);
            continue;
        }
        if !drained {
            // Decoding stopped at the look-ahead bound with whole frames
            // still in the buffer, and the bound has room again: go on with
            // them before reading. The stream may hold nothing more for now
            // (the peer has said all it will, or has ended), and a read would
            // leave them there until the peer next speaks.
            continue;
        }
        if ended {
            // What was read before the end still goes up.
            if !waiting.is_empty() && !shared.inbound.push_batch(&mut waiting).await {
                return DisconnectReason::Closing;
            }
            return match codec.decode_eof(read_buf) {
                Ok(_) => DisconnectReason::PeerClosed,
                Err(e) => DisconnectReason::Protocol(e.to_string()),
            };
        }
        // While messages wait, a read takes no more than the bound allows.
        let limit = if waiting.is_empty() {
            u64::MAX
        } else {
            (config.inbound_lookahead - waiting_bytes - progress) as u64
        };
        size_read_buffer(read_buf, codec.envelope_in_progress(), &mut oversized, chunk);
        let spare = (read_buf.capacity() - read_buf.len()) as u64;
        deadline.as_mut().reset(liveness.deadline(progress));
        let mut limited = (&mut *reader).take(limit);
        tokio::select! {
            read = limited.read_buf(read_buf) => {
                let n = match read {
                    Ok(n) => n,
                    // A TLS stream that ends without close_notify is still
                    // its end for the frames inside: a cut frame shows in
                    // `decode_eof` below.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => return DisconnectReason::Io(e.to_string()),
                };
                if n == 0 {
                    ended = true;
                    continue;
                }
                bytes_arrived = true;
                if n as u64 >= spare.min(limit) {
                    // The peer has more to say than fits: read big from now on.
                    chunk = READ_CHUNK;
                }
            }
            // The application made room: offer what waits again.
            () = room.as_mut(), if !waiting.is_empty() => {}
            () = &mut deadline => return liveness.expired(progress),
        }
    }
}

/// Bytes received and not decoded yet: the frame in progress so far, its
/// length prefix included (and, when decoding stopped at the look-ahead
/// bound, the whole frames before it).
fn buffered_bytes(codec: &Codec, read_buf: &BytesMut) -> usize {
    // Once the length is read the codec has taken those 4 bytes out.
    read_buf.len() + if codec.envelope_in_progress().is_some() { 4 } else { 0 }
}

/// When a peer counts as gone: after `heartbeat_timeout` without a byte,
/// or once the frame in progress has fallen behind the minimum rate (its
/// bytes so far at `min_rate`, plus one heartbeat timeout of slack, since
/// it began).
struct Liveness {
    timeout: Duration,
    /// Bytes per second.
    min_rate: u64,
    /// The last byte received (or the end of a pause that was ours).
    heard: Instant,
    /// The frame in progress: when its clock started, and its bytes then
    /// (0 from its first byte; more if the clock restarted after a pause).
    frame: Option<(Instant, usize)>,
}

impl Liveness {
    fn new(timeout: Duration, min_rate: u64, now: Instant) -> Self {
        Self { timeout, min_rate, heard: now, frame: None }
    }

    /// Bytes arrived at `now`; `progress` bytes of a frame are in progress
    /// after them (0 if they ended on a frame's end).
    fn heard(&mut self, now: Instant, frame_completed: bool, progress: usize) {
        self.heard = now;
        if progress == 0 {
            self.frame = None;
        } else if frame_completed || self.frame.is_none() {
            // The read that brought a frame's first bytes starts its clock.
            self.frame = Some((now, 0));
        }
    }

    /// Reading starts again after a pause of ours: the clocks start afresh.
    fn resumed(&mut self, now: Instant, progress: usize) {
        self.heard = now;
        if progress > 0 {
            self.frame = Some((now, progress));
        }
    }

    fn silence_deadline(&self) -> Instant {
        self.heard + self.timeout
    }

    fn frame_deadline(&self, progress: usize) -> Option<Instant> {
        let (start, base) = self.frame?;
        let bytes = progress.saturating_sub(base) as u128;
        let nanos = bytes * 1_000_000_000 / u128::from(self.min_rate);
        // Past a year is never (and keeps the sum representable).
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_DURATION);
        Some(start + self.timeout + earned)
    }

    fn deadline(&self, progress: usize) -> Instant {
        let silence = self.silence_deadline();
        self.frame_deadline(progress).map_or(silence, |frame| frame.min(silence))
    }

    /// Why the deadline passed.
    fn expired(&self, progress: usize) -> DisconnectReason {
        match self.frame_deadline(progress) {
            Some(frame) if frame < self.silence_deadline() => DisconnectReason::TooSlow,
            _ => DisconnectReason::HeartbeatTimeout,
        }
    }
}

/// Makes room in the read buffer for the next read. Inside a large frame,
/// the buffer grows toward the frame's size with what has arrived (at most
/// doubling), so it is read in place with few copies while memory follows
/// the bytes received, not the length announced. Once a buffer has grown past
/// [`MAX_KEPT_BUFFER`] (`oversized` remembers it), it is given back as soon
/// as what is buffered and the frame in progress fit a small one again.
///
/// Between frames, a read gets `chunk` bytes of room (a quarter of it at
/// least): small while the connection is quiet, [`READ_CHUNK`] once a read
/// has filled the room it had.
fn size_read_buffer(read_buf: &mut BytesMut, envelope: Option<usize>, oversized: &mut bool, chunk: usize) {
    *oversized |= read_buf.capacity() > MAX_KEPT_BUFFER;
    let needed = envelope.map_or(read_buf.len(), |envelope| envelope.max(read_buf.len()));
    if *oversized && needed < READ_CHUNK {
        // One large frame must not pin its buffer for the connection's whole
        // life: neither the buffer itself, nor (once the frame is split off)
        // its allocation through the small view left after the frame, whose
        // capacity no longer shows how large that allocation is.
        let mut fresh = BytesMut::with_capacity(READ_CHUNK);
        fresh.extend_from_slice(read_buf);
        *read_buf = fresh;
        *oversized = false;
        return;
    }
    let spare = read_buf.capacity() - read_buf.len();
    match envelope {
        Some(envelope) if envelope > read_buf.len() => {
            let missing = envelope - read_buf.len();
            let step = missing.min(read_buf.len().max(READ_CHUNK));
            if spare < step {
                read_buf.reserve(step);
            }
        }
        _ => {
            if spare < chunk / 4 {
                read_buf.reserve(chunk);
            }
        }
    }
    *oversized |= read_buf.capacity() > MAX_KEPT_BUFFER;
}

/// The ACK of a DATA_REQ that just arrived, sent now if `on_arrival`.
fn ack_handle(outbox: &Arc<Outbox>, id: MsgId, on_arrival: bool) -> AckHandle {
    let ack = AckHandle { id, outbox: outbox.clone(), already_sent: false };
    if on_arrival { AckHandle { already_sent: ack.send().is_ok(), ..ack } } else { ack }
}

#[cfg(test)]
mod tests {
    //! The read buffer's size, through the read loop's own steps: decode what
    //! is buffered, size the buffer, then read into its spare capacity (as
    //! `read_buf` does) no more than what has arrived.

    use super::*;

    const MIB: usize = 1024 * 1024;
    /// The default maximum envelope.
    const ANNOUNCED: usize = 16 * MIB;
    /// Bytes the simulated socket hands over per read at most, by default.
    const ARRIVAL: usize = 256 * 1024;

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
        run_in_reads_of(ARRIVAL, codec, buf, wire, sent, available)
    }

    fn run_in_reads_of(
        arrival: usize,
        codec: &mut Codec,
        buf: &mut BytesMut,
        wire: &[u8],
        sent: &mut usize,
        available: usize,
    ) -> (Vec<Frame>, usize) {
        let mut frames = Vec::new();
        let mut largest = buf.capacity();
        let mut oversized = false;
        loop {
            while let Some(frame) = codec.decode(buf).expect("well-formed") {
                frames.push(frame);
            }
            size_read_buffer(buf, codec.envelope_in_progress(), &mut oversized, READ_CHUNK);
            largest = largest.max(buf.capacity());
            if *sent == available {
                return (frames, largest);
            }
            if buf.capacity() == buf.len() {
                // What `read_buf` does with no spare capacity.
                buf.reserve(64);
            }
            let n = (buf.capacity() - buf.len()).min(available - *sent).min(arrival);
            buf.extend_from_slice(&wire[*sent..*sent + n]);
            *sent += n;
            largest = largest.max(buf.capacity());
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
            let mut codec = Codec::builder().max_frame_length(ANNOUNCED).build();
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            // A first small frame, as after any handshake: from then on the
            // buffer shares its allocation with what it hands out.
            buf.extend_from_slice(&[0, 0, 0, 2, 0x03, 1]);
            assert!(codec.decode(&mut buf).unwrap().is_some());
            let mut sent = 0;
            let (frames, _) = run_in_reads_of(16 * 1024, &mut codec, &mut buf, &wire, &mut sent, wire.len());
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
}
