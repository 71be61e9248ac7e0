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
use crate::peer::{AckHandle, AckSent, Incoming};
use crate::per_second::PerSecond;
use crate::read_buffer::ReadRoom;
use crate::shared::Shared;
use crate::stats::PeerCounters;

/// Frames decoded from one connection before it lets others run.
const MAX_FRAMES_PER_TURN: usize = 4096;
/// HEARTBEAT, extra HELLO and unknown-type frames one connection may send
/// in a second (an honest peer sends one HEARTBEAT per interval) before it
/// is closed as a flood.
pub const MAX_CONTROL_FRAMES_PER_SECOND: usize = 1024;
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
    // An idle connection (HEARTBEATs only) keeps its small first buffer; a
    // busy one reads big chunks.
    let mut read_room = ReadRoom::new();
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
        if messages == 0 && control > 0 {
            read_room.quiet();
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
        let limit = limit
            .min(read_room.make_room(read_buf, codec.envelope_in_progress(), !waiting.is_empty()) as u64);
        let spare = (read_buf.capacity() - read_buf.len()) as u64;
        deadline.as_mut().reset(liveness.deadline(progress));
        let mut limited = (&mut *reader).take(limit);
        tokio::select! {
            read = read_or_tidy(&mut limited, read_buf, &mut read_room) => {
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
                    read_room.filled();
                }
            }
            // The application made room: offer what waits again.
            () = room.as_mut(), if !waiting.is_empty() => {}
            () = &mut deadline => return liveness.expired(progress),
        }
    }
}

/// Reads into `read_buf`'s spare capacity; if nothing has arrived, lets
/// `read_room` give back the buffers it keeps that nobody uses before
/// waiting.
async fn read_or_tidy<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    read_buf: &mut BytesMut,
    read_room: &mut ReadRoom,
) -> std::io::Result<usize> {
    let mut read = std::pin::pin!(reader.read_buf(read_buf));
    std::future::poll_fn(|cx| {
        let read = read.as_mut().poll(cx);
        if read.is_pending() {
            read_room.nothing_to_read();
        }
        read
    })
    .await
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

/// The ACK of a DATA_REQ that just arrived, sent now if `on_arrival`.
fn ack_handle(outbox: &Arc<Outbox>, id: MsgId, on_arrival: bool) -> AckHandle {
    let mut ack = AckHandle { id, outbox: outbox.clone(), sent: AckSent::Not };
    if on_arrival && ack.send().is_ok() {
        ack.sent = AckSent::OnArrival;
    }
    ack
}
