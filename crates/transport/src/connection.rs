//! One connection's life: handshake, then a reader and a writer until it ends.
//!
//! Everything here is generic over the byte stream, so TCP, TLS, WebSocket or
//! an in-memory duplex all share the same handshake, heartbeat and I/O code.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smartsock_framing::{Codec, Frame, MsgId, PROTOCOL_VERSION, PeerId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::Decoder;
use tracing::{Instrument, debug, field, trace, warn};

use crate::event::{DisconnectReason, DropReason, Event, RefusedReason, Side};
use crate::outbox::Outbox;
use crate::peer::{AckHandle, Incoming, Orphans, Outgoing, PeerHandle};
use crate::shared::Shared;

/// Bytes the reader asks the OS for at once: big reads, many frames each.
const READ_CHUNK: usize = 64 * 1024;
/// Write-buffer capacity kept between batches; more is given back.
const MAX_KEPT_BUFFER: usize = 1024 * 1024;
/// Payloads at least this long are written from their own buffer (vectored
/// write) instead of being copied into the batch buffer.
const VECTORED_MIN: usize = 16 * 1024;
/// A HELLO's envelope: type, version, identity. The handshake refuses any
/// first frame longer than this before reading it.
const HELLO_ENVELOPE_LEN: usize = 18;

/// How a connection ended, for the connect loop's next move.
pub(crate) enum Served {
    /// The handshake completed and the peer was up until the connection ended.
    Up,
    /// The handshake was refused.
    Refused(RefusedReason),
    /// The stream failed, or the transport closed, before the peer was up.
    Failed,
}

/// Runs a connection on `stream` to its end.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    handshake_permit: Option<OwnedSemaphorePermit>,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::debug_span!("connection", peer = field::Empty, remote = %addr, role = %side);
    serve_in_span(shared, stream, side, addr, handshake_permit, span.clone()).instrument(span).await
}

async fn serve_in_span<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    handshake_permit: Option<OwnedSemaphorePermit>,
    span: tracing::Span,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = &shared.config;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut read_buf = BytesMut::with_capacity(READ_CHUNK);

    let handshake = timeout(
        config.handshake_timeout,
        handshake(&mut reader, &mut writer, &mut read_buf, side, config.identity),
    );
    let outcome = tokio::select! {
        outcome = handshake => outcome.unwrap_or(Err(RefusedReason::Timeout)),
        () = shared.cancel.cancelled() => return Served::Failed,
    };
    drop(handshake_permit);
    let (peer, hello_sent) = match outcome {
        Ok(done) => done,
        Err(reason) => {
            refuse(&shared, &addr, reason.clone(), &mut writer).await;
            return match reason {
                RefusedReason::Io(_) | RefusedReason::Timeout => Served::Failed,
                reason => Served::Refused(reason),
            };
        }
    };
    span.record("peer", field::display(peer));

    let outbox = Arc::new(Outbox::new(config.outbox_capacity, config.outbox_bytes, config.ack_capacity));
    let handle =
        PeerHandle { id: peer, addr: addr.clone(), side, outbox: outbox.clone(), room: shared.room.clone() };
    if let Err(reason) = shared.register(&handle) {
        refuse(&shared, &addr, reason.clone(), &mut writer).await;
        return Served::Refused(reason);
    }
    debug!("peer connected");
    shared.emit(Event::PeerConnected { peer, addr: addr.to_string(), side });

    // Frames the writer has taken out of the outbox and not yet seen written:
    // kept out here so that, if the connection ends first, they are counted.
    let mut batch = VecDeque::new();
    // Messages written to the stream: if a close cannot be confirmed, none
    // of them is known to have reached the peer.
    let mut written = 0u64;
    let (reason, confirmed) = {
        let read = read_loop(&shared, peer, &outbox, &mut reader, &mut read_buf);
        let write = write_loop(&shared, &mut writer, &outbox, &mut batch, &mut written, hello_sent);
        let grace = async {
            shared.cancel.cancelled().await;
            sleep(config.linger).await;
        };
        tokio::pin!(read, write, grace);
        tokio::select! {
            // A writer that is done goes first: when the peer's end and ours
            // come together, the peer's end counts as its confirmation.
            biased;
            reason = &mut write => match reason {
                // Flushed and half-closed: the peer has everything once it
                // reads our end. Keep reading until its own end, which says
                // it has read ours: a socket closed with unread bytes (a
                // peer's HEARTBEAT is enough) or bytes still arriving is
                // reset by the kernel, and what it had not sent yet is lost.
                DisconnectReason::Closing => tokio::select! {
                    reason = &mut read => {
                        let confirmed = reason == DisconnectReason::PeerClosed;
                        (DisconnectReason::Closing, confirmed)
                    }
                    () = &mut grace => (DisconnectReason::Closing, false),
                },
                reason => (reason, false),
            },
            reason = &mut read => {
                if reason == DisconnectReason::PeerClosed && shared.cancel.is_cancelled() {
                    // The peer ended its side while we are closing (a closing
                    // smartsock peer reads on until our end): finish our
                    // flush rather than drop it, though nothing confirms
                    // that it was read.
                    tokio::select! {
                        _ = &mut write => {}
                        () = &mut grace => {}
                    }
                    (DisconnectReason::Closing, false)
                } else {
                    (reason, false)
                }
            }
            () = &mut grace => (DisconnectReason::Closing, false),
        }
    };
    // Closed before anyone hears of the disconnect, so that a handle is seen
    // closed by whoever reacts to the event; what is queued is handed back below.
    let queued = outbox.close(&mut Vec::new());
    shared.unregister(&handle);
    match &reason {
        DisconnectReason::Protocol(_) | DisconnectReason::Io(_) => warn!(%reason, "peer disconnected"),
        _ => debug!(%reason, confirmed, "peer disconnected"),
    }
    shared.emit(Event::PeerDisconnected { peer, reason });
    if shared.cancel.is_cancelled() {
        // Closing: whatever did not reach the peer for sure is counted for
        // the close's report (and handed back or reported below as well).
        let is_message = |item: &Outgoing| matches!(item.frame, Frame::Data(_) | Frame::DataReq { .. });
        let left = queued.iter().chain(batch.iter()).filter(|item| is_message(item)).count() as u64;
        let unconfirmed = if confirmed { left } else { left + written };
        if unconfirmed > 0 {
            warn!(unconfirmed, "closed before the peer confirmed it had read everything");
            shared.unconfirmed.fetch_add(unconfirmed, std::sync::atomic::Ordering::Relaxed);
        }
    }
    hand_back_unsent(&shared, peer, queued, &batch);
    Served::Up
}

/// Logs and reports a refused handshake, then closes the stream.
async fn refuse<W: AsyncWrite + Unpin>(shared: &Shared, addr: &str, reason: RefusedReason, writer: &mut W) {
    warn!(%reason, "handshake refused");
    shared.emit(Event::HandshakeRefused { addr: addr.to_owned(), reason });
    // Best effort and bounded: the peer may not be reading at all.
    let _ = timeout(shared.config.linger, writer.shutdown()).await;
}

/// Sends our HELLO and reads the peer's, per PROTOCOL.md. Bytes that came
/// after the peer's HELLO stay in `read_buf` for the reader. Returns the
/// peer's identity and when our HELLO went out (the heartbeat clock's start).
async fn handshake<R, W>(
    reader: &mut R,
    writer: &mut W,
    read_buf: &mut BytesMut,
    side: Side,
    identity: PeerId,
) -> Result<(PeerId, Instant), RefusedReason>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let io_error = |e: io::Error| RefusedReason::Io(e.to_string());
    if side == Side::Bind {
        // Every aiomsg bind end waits for the peer's first byte before
        // answering (room to tell raw TCP from a WebSocket upgrade).
        while read_buf.is_empty() {
            if reader.read_buf(read_buf).await.map_err(io_error)? == 0 {
                return Err(RefusedReason::Io("closed before sending anything".into()));
            }
        }
    }
    writer.write_all(&Frame::hello(identity).header()).await.map_err(io_error)?;
    writer.flush().await.map_err(io_error)?;
    let hello_sent = Instant::now();

    let mut codec = Codec::builder().max_frame_length(HELLO_ENVELOPE_LEN).build();
    loop {
        match codec.decode(read_buf) {
            Ok(Some(Frame::Hello { version, identity })) if version == PROTOCOL_VERSION => {
                return Ok((identity, hello_sent));
            }
            Ok(Some(Frame::Hello { version, .. })) => return Err(RefusedReason::Version(version)),
            Ok(Some(other)) => {
                return Err(RefusedReason::Malformed(format!("expected HELLO, got {other:?}")));
            }
            Ok(None) => {}
            Err(e) => return Err(RefusedReason::Malformed(e.to_string())),
        }
        if reader.read_buf(read_buf).await.map_err(io_error)? == 0 {
            return Err(RefusedReason::Io("closed during the handshake".into()));
        }
    }
}

/// Reads big chunks and decodes every complete frame before reading again.
async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    peer: PeerId,
    outbox: &Arc<Outbox>,
    reader: &mut R,
    read_buf: &mut BytesMut,
) -> DisconnectReason {
    let config = &shared.config;
    let mut codec = Codec::builder().max_frame_length(config.max_frame_length).build();
    let silence = sleep(config.heartbeat_timeout);
    tokio::pin!(silence);
    let mut acks_dropped = 0u64;
    // The messages of one read, handed to the application in one go.
    let mut delivered = VecDeque::new();
    // Likewise the ACKs of one read, when a sink takes them.
    let sink = shared.ack_sink.get();
    let mut acks = Vec::new();
    let mut unknown_acks = UnknownAcks::new();
    loop {
        let mut received = false;
        let mut malformed = None;
        loop {
            let frame = match codec.decode(read_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    // What came before the bad frame is delivered first.
                    malformed = Some(DisconnectReason::Protocol(e.to_string()));
                    break;
                }
            };
            received = true;
            let incoming = match frame {
                Frame::Data(payload) => Incoming { peer, payload, request: None },
                Frame::DataReq { id, payload } => {
                    let ack = AckHandle { id, outbox: outbox.clone(), already_sent: false };
                    let ack = if config.ack_on_arrival {
                        AckHandle { already_sent: ack.send().is_ok(), ..ack }
                    } else {
                        ack
                    };
                    Incoming { peer, payload, request: Some(ack) }
                }
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
                Frame::Heartbeat => continue,
                Frame::Hello { .. } => {
                    debug!("ignoring a second HELLO");
                    continue;
                }
                Frame::Unknown { kind, body } => {
                    trace!(kind, len = body.len(), "skipping a frame of unknown type");
                    continue;
                }
            };
            delivered.push_back(incoming);
        }
        // A full inbound queue waits here: this connection stops reading
        // and TCP pushes back on the peer. Nothing is dropped.
        if !delivered.is_empty() && !shared.inbound.push_batch(&mut delivered).await {
            return DisconnectReason::Closing;
        }
        if let Some(reason) = malformed {
            return reason;
        }
        if let (Some(sink), false) = (sink, acks.is_empty()) {
            let unknown = sink.acknowledged(peer, &acks);
            acks.clear();
            if let Err(reason) = unknown_acks.add(unknown) {
                return reason;
            }
        }
        if received {
            // Time spent waiting on a full inbound queue is not the peer's silence.
            silence.as_mut().reset(Instant::now() + config.heartbeat_timeout);
        }
        size_read_buffer(read_buf, codec.envelope_in_progress());
        tokio::select! {
            read = reader.read_buf(read_buf) => match read {
                Ok(0) => {
                    return match codec.decode_eof(read_buf) {
                        Ok(_) => DisconnectReason::PeerClosed,
                        Err(e) => DisconnectReason::Protocol(e.to_string()),
                    };
                }
                Ok(_) => {}
                Err(e) => return DisconnectReason::Io(e.to_string()),
            },
            () = &mut silence => return DisconnectReason::HeartbeatTimeout,
        }
    }
}

/// Makes room in the read buffer for the next read. Inside a large frame,
/// the buffer grows toward the frame's size with what has arrived (at most
/// doubling), so it is read in place with few copies while memory follows
/// the bytes received, not the length announced. Between frames, a buffer
/// grown past [`MAX_KEPT_BUFFER`] is given back.
fn size_read_buffer(read_buf: &mut BytesMut, envelope: Option<usize>) {
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
            if read_buf.capacity() > MAX_KEPT_BUFFER && read_buf.len() < READ_CHUNK {
                // One large frame must not pin its buffer for the
                // connection's whole life.
                let mut fresh = BytesMut::with_capacity(READ_CHUNK);
                fresh.extend_from_slice(read_buf);
                *read_buf = fresh;
            } else if spare < READ_CHUNK / 4 {
                read_buf.reserve(READ_CHUNK);
            }
        }
    }
}

/// Counts the ACKs a connection sent for no pending message, per second.
struct UnknownAcks {
    window_start: Instant,
    count: usize,
}

impl UnknownAcks {
    fn new() -> Self {
        Self { window_start: Instant::now(), count: 0 }
    }

    fn add(&mut self, unknown: usize) -> Result<(), DisconnectReason> {
        if unknown == 0 {
            return Ok(());
        }
        // The clock is read only for reads that carried unknown ACKs.
        let now = Instant::now();
        if now.duration_since(self.window_start) >= std::time::Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += unknown;
        if self.count > crate::MAX_UNKNOWN_ACKS_PER_SECOND {
            return Err(DisconnectReason::Protocol(format!(
                "more than {} ACKs for no pending message within a second",
                crate::MAX_UNKNOWN_ACKS_PER_SECOND
            )));
        }
        Ok(())
    }
}

/// Drains the outbox in batches, one write each (ACKs first); sends a
/// HEARTBEAT after the heartbeat interval with nothing sent; on close,
/// flushes what is queued and shuts the write side down. The HELLO was the last frame sent before it starts.
async fn write_loop<W: AsyncWrite + Unpin>(
    shared: &Shared,
    writer: &mut W,
    outbox: &Outbox,
    batch: &mut VecDeque<Outgoing>,
    written: &mut u64,
    hello_sent: Instant,
) -> DisconnectReason {
    let config = &shared.config;
    let mut encoder = BatchEncoder::new(config.max_frame_length);
    let mut acks = Vec::new();
    let idle = sleep_until(hello_sent + config.heartbeat_interval);
    tokio::pin!(idle);
    loop {
        let mut heartbeat = false;
        let closing = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => {
                batch.extend(outbox.close(&mut acks));
                true
            }
            _ = std::future::poll_fn(|cx| outbox.poll_take(cx, &mut acks, batch)) => {
                // Once per batch, not per frame: senders waiting for room
                // look again.
                shared.room.notify_waiters();
                false
            }
            () = &mut idle => {
                heartbeat = true;
                false
            }
        };
        if let Err(e) = encoder.write(writer, &acks, batch, heartbeat).await {
            return DisconnectReason::Io(e.to_string());
        }
        *written +=
            batch.iter().filter(|item| matches!(item.frame, Frame::Data(_) | Frame::DataReq { .. })).count()
                as u64;
        acks.clear();
        batch.clear();
        if closing {
            // Half-close: the peer reads our end after everything we wrote;
            // the read side stays open (see `serve_in_span`).
            if let Err(e) = writer.shutdown().await {
                return DisconnectReason::Io(e.to_string());
            }
            return DisconnectReason::Closing;
        }
        idle.as_mut().reset(Instant::now() + config.heartbeat_interval);
    }
}

/// Turns a batch of frames into as few writes as the stream allows: small
/// frames are encoded into one buffer; large payloads are not copied but
/// written from their own `Bytes` with a vectored write.
struct BatchEncoder {
    max_frame_length: usize,
    buf: BytesMut,
    segments: Vec<Bytes>,
}

impl BatchEncoder {
    fn new(max_frame_length: usize) -> Self {
        Self { max_frame_length, buf: BytesMut::with_capacity(READ_CHUNK), segments: Vec::new() }
    }

    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        acks: &[MsgId],
        batch: &VecDeque<Outgoing>,
        heartbeat: bool,
    ) -> io::Result<()> {
        for &id in acks {
            Frame::Ack(id).encode_into(&mut self.buf);
        }
        if heartbeat {
            Frame::Heartbeat.encode_into(&mut self.buf);
        }
        for item in batch {
            let frame = &item.frame;
            if frame.envelope_len() > self.max_frame_length {
                // The layers above check sizes before queueing; this guard
                // keeps a frame the peer would refuse from ever reaching it.
                warn!(len = frame.envelope_len(), "dropping a frame over the maximum frame length");
                continue;
            }
            let payload = frame.payload();
            if payload.len() >= VECTORED_MIN {
                self.buf.put_slice(&frame.header());
                self.segments.push(self.buf.split().freeze());
                self.segments.push(payload.clone());
            } else {
                frame.encode_into(&mut self.buf);
            }
        }
        if self.segments.is_empty() {
            writer.write_all(&self.buf).await?;
            self.buf.clear();
            if self.buf.capacity() > MAX_KEPT_BUFFER {
                // One burst of big frames must not pin its buffer for the
                // connection's whole life.
                self.buf = BytesMut::with_capacity(READ_CHUNK);
            }
        } else {
            if !self.buf.is_empty() {
                self.segments.push(self.buf.split().freeze());
            }
            let result = write_all_vectored(writer, &mut self.segments).await;
            self.segments.clear();
            result?;
        }
        writer.flush().await
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, segments: &mut [Bytes]) -> io::Result<()> {
    let mut first = 0;
    while first < segments.len() {
        let slices: Vec<IoSlice<'_>> = segments[first..].iter().take(64).map(|s| IoSlice::new(s)).collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let segment = &mut segments[first];
            let step = written.min(segment.len());
            segment.advance(step);
            written -= step;
            if segment.is_empty() {
                first += 1;
            }
        }
        while first < segments.len() && segments[first].is_empty() {
            first += 1;
        }
    }
    Ok(())
}

/// After a disconnect: frames never written that may go to another peer go
/// up as [`Orphans`]; the rest are dropped and counted. So are the messages
/// of a write the connection ended in (`unconfirmed`): part of them may have
/// reached the peer, so sending them elsewhere could deliver them twice.
fn hand_back_unsent(shared: &Shared, peer: PeerId, queued: Vec<Outgoing>, unconfirmed: &VecDeque<Outgoing>) {
    let mut frames = Vec::new();
    let is_message = |item: &Outgoing| matches!(item.frame, Frame::Data(_) | Frame::DataReq { .. });
    let mut dropped = unconfirmed.iter().filter(|item| is_message(item)).count() as u64;
    for item in queued {
        match item.frame {
            Frame::Data(_) | Frame::DataReq { .. } if item.reroutable => frames.push(item),
            Frame::Data(_) | Frame::DataReq { .. } => dropped += 1,
            _ => {}
        }
    }
    if !frames.is_empty() {
        let count = frames.len() as u64;
        if shared.orphans.try_send(Orphans { peer, frames }).is_err() {
            dropped += count;
        }
    }
    if dropped > 0 {
        warn!(dropped, "messages queued for a disconnected peer were dropped");
        shared.emit(Event::Dropped { peer: Some(peer), count: dropped, reason: DropReason::PeerGone });
    }
}
