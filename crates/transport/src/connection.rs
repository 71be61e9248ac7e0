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
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_util::codec::Decoder;
use tracing::{Instrument, debug, field, trace, warn};

use crate::admission::Ticket;
use crate::event::{DisconnectReason, DropReason, Event, RefusedReason, Side};
use crate::outbox::Outbox;
use crate::peer::{AckHandle, Incoming, Orphans, Outgoing, PeerHandle};
use crate::shared::Shared;
use crate::stats::PeerCounters;

/// Bytes the reader asks the OS for at once: big reads, many frames each.
const READ_CHUNK: usize = 64 * 1024;
/// Frames decoded from one connection before it lets others run.
const MAX_FRAMES_PER_TURN: usize = 4096;
/// HEARTBEAT, extra HELLO and unknown-type frames one connection may send
/// in a second (an honest peer sends one HEARTBEAT per interval) before it
/// is closed as a flood.
pub const MAX_CONTROL_FRAMES_PER_SECOND: usize = 1024;
/// The read buffer of a new connection, before any traffic.
const INITIAL_READ_BUFFER: usize = 4 * 1024;
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
    /// (Connect end) the peer closed the connection after our HELLO without
    /// answering: a bind end refuses so (identity taken, no free slot).
    Rejected,
}

/// Runs a connection on `stream` to its end.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    ticket: Option<Ticket>,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::debug_span!("connection", peer = field::Empty, remote = %addr, role = %side);
    serve_in_span(shared, stream, side, addr, ticket, span.clone()).instrument(span).await
}

async fn serve_in_span<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    ticket: Option<Ticket>,
    span: tracing::Span,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = &shared.config;
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Small until the peer shows it has something to say: an idle
    // connection should cost little (the reader grows it as bytes arrive).
    let mut read_buf = BytesMut::with_capacity(INITIAL_READ_BUFFER);
    let deadline = Instant::now() + config.handshake_timeout;

    // The connect end speaks first. The bind end reads the peer's HELLO and
    // decides (identity, slots) before it answers, so a refused peer never
    // sees a handshake it could take for a connection.
    let exchange = async {
        let hello_sent = match side {
            Side::Connect => Some(send_hello(&mut writer, config.identity).await?),
            Side::Bind => None,
        };
        let peer = read_hello(&mut reader, &mut read_buf, side).await?;
        Ok((peer, hello_sent))
    };
    let shed = async {
        match &ticket {
            Some(ticket) => ticket.shed().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = timeout_at(deadline, exchange) => outcome.unwrap_or(Err(RefusedReason::Timeout)),
        () = shed => Err(RefusedReason::Shed),
        () = shared.cancel.cancelled() => return Served::Failed,
    };
    drop(ticket);
    let (peer, hello_sent) = match outcome {
        Ok(done) => done,
        Err(reason) => {
            refuse(&shared, &addr, reason.clone(), &mut writer).await;
            return match reason {
                RefusedReason::Io(_) if side == Side::Connect => Served::Rejected,
                RefusedReason::Io(_) | RefusedReason::Timeout | RefusedReason::Shed => Served::Failed,
                reason => Served::Refused(reason),
            };
        }
    };
    span.record("peer", field::display(peer));

    let outbox = Arc::new(Outbox::new(config.outbox_capacity, config.outbox_bytes, config.ack_capacity));
    let counters = Arc::new(PeerCounters::new(peer, addr.clone(), side, shared.stats.totals.clone()));
    let handle = PeerHandle {
        id: peer,
        addr: addr.clone(),
        side,
        outbox: outbox.clone(),
        room: shared.room.clone(),
        counters: counters.clone(),
    };
    if let Err(reason) = shared.register(&handle) {
        refuse(&shared, &addr, reason.clone(), &mut writer).await;
        return Served::Refused(reason);
    }
    let hello_sent = match hello_sent {
        Some(at) => at,
        None => match timeout_at(deadline, send_hello(&mut writer, config.identity)).await {
            Ok(Ok(at)) => at,
            failed => {
                let reason = match failed {
                    Ok(Err(reason)) => reason,
                    _ => RefusedReason::Timeout,
                };
                let queued = outbox.close(&mut Vec::new());
                shared.unregister(&handle);
                hand_back_unsent(&shared, &handle, queued, &VecDeque::new());
                report_refusal(&shared, &addr, reason);
                return Served::Failed;
            }
        },
    };
    debug!("peer connected");
    shared.stats.connected();
    shared.emit(Event::PeerConnected { peer, addr: addr.to_string(), side });

    // Frames the writer has taken out of the outbox and not yet seen written:
    // kept out here so that, if the connection ends first, they are counted.
    let mut batch = VecDeque::new();
    // Messages written to the stream: if a close cannot be confirmed, none
    // of them is known to have reached the peer.
    let mut written = 0u64;
    let (reason, confirmed) = {
        let read = read_loop(&shared, peer, &outbox, &counters, &mut reader, &mut read_buf);
        let write =
            write_loop(&shared, &mut writer, &outbox, &counters, &mut batch, &mut written, hello_sent);
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
                    // smartsock peer half-closes, then reads on until our
                    // end): finish our flush rather than drop it. If it
                    // completes, the peer's stream was still open for
                    // reading when everything reached it, so it counts as
                    // confirmed; a reset would have failed the write.
                    let flushed = tokio::select! {
                        reason = &mut write => reason == DisconnectReason::Closing,
                        () = &mut grace => false,
                    };
                    (DisconnectReason::Closing, flushed)
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
    hand_back_unsent(&shared, &handle, queued, &batch);
    Served::Up
}

/// Logs and reports a refused handshake, then closes the stream.
async fn refuse<W: AsyncWrite + Unpin>(shared: &Shared, addr: &str, reason: RefusedReason, writer: &mut W) {
    report_refusal(shared, addr, reason);
    // Best effort and bounded: the peer may not be reading at all.
    let _ = timeout(shared.config.linger, writer.shutdown()).await;
}

/// Reports a refused connection: always as an event, in the log at most
/// once a second at WARN (with how many were not logged), so that a storm
/// of refusals cannot flood the log.
pub(crate) fn report_refusal(shared: &Shared, addr: &str, reason: RefusedReason) {
    shared.stats.refused(&reason);
    match shared.refusal_log.allow() {
        Some(0) => warn!(remote = addr, %reason, "handshake refused"),
        Some(suppressed) => {
            warn!(remote = addr, %reason, suppressed, "handshake refused (and others not logged)")
        }
        None => debug!(remote = addr, %reason, "handshake refused"),
    }
    shared.emit(Event::HandshakeRefused { addr: addr.to_owned(), reason });
}

/// Writes our HELLO; returns when it went out (the heartbeat clock's start).
async fn send_hello<W: AsyncWrite + Unpin>(
    writer: &mut W,
    identity: PeerId,
) -> Result<Instant, RefusedReason> {
    let io_error = |e: io::Error| RefusedReason::Io(e.to_string());
    writer.write_all(&Frame::hello(identity).header()).await.map_err(io_error)?;
    writer.flush().await.map_err(io_error)?;
    Ok(Instant::now())
}

/// Reads the peer's HELLO, per PROTOCOL.md. Bytes that came after it stay in
/// `read_buf` for the reader.
async fn read_hello<R: AsyncRead + Unpin>(
    reader: &mut R,
    read_buf: &mut BytesMut,
    side: Side,
) -> Result<PeerId, RefusedReason> {
    let io_error = |e: io::Error| RefusedReason::Io(e.to_string());
    let mut codec = Codec::builder().max_frame_length(HELLO_ENVELOPE_LEN).build();
    loop {
        match codec.decode(read_buf) {
            Ok(Some(Frame::Hello { version, identity })) if version == PROTOCOL_VERSION => {
                return Ok(identity);
            }
            Ok(Some(Frame::Hello { version, .. })) => return Err(RefusedReason::Version(version)),
            Ok(Some(other)) => {
                return Err(RefusedReason::Malformed(format!("expected HELLO, got {other:?}")));
            }
            Ok(None) => {}
            Err(e) => return Err(RefusedReason::Malformed(e.to_string())),
        }
        if reader.read_buf(read_buf).await.map_err(io_error)? == 0 {
            return Err(RefusedReason::Io(match (side, read_buf.is_empty()) {
                (Side::Bind, true) => "closed before sending anything".into(),
                _ => "closed during the handshake".into(),
            }));
        }
    }
}

/// Reads big chunks and decodes every complete frame before reading again.
async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    peer: PeerId,
    outbox: &Arc<Outbox>,
    counters: &PeerCounters,
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
    let mut acks = Vec::new();
    let mut unknown_acks = PerSecond::new(crate::MAX_UNKNOWN_ACKS_PER_SECOND, "ACKs for no pending message");
    let mut control_frames =
        PerSecond::new(MAX_CONTROL_FRAMES_PER_SECOND, "HEARTBEAT, HELLO or unknown frames");
    // Whether the read buffer has grown past what is kept between frames.
    let mut oversized = false;
    loop {
        // Looked up per read, not once: a sink installed after this
        // connection came up must get its ACKs too (the queue it replaces
        // is gone by then).
        let sink = shared.ack_sink.get();
        let mut received = false;
        let mut malformed = None;
        let mut control = 0;
        let mut decoded = 0;
        loop {
            if decoded == MAX_FRAMES_PER_TURN {
                break;
            }
            decoded += 1;
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
            };
            delivered.push_back(incoming);
        }
        if received {
            // Counted once per read (a few atomic adds), not per message.
            counters.received(&delivered, Instant::now());
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
        if let Err(reason) = control_frames.add(control) {
            return reason;
        }
        if received {
            // Time spent waiting on a full inbound queue is not the peer's silence.
            silence.as_mut().reset(Instant::now() + config.heartbeat_timeout);
        }
        if decoded == MAX_FRAMES_PER_TURN {
            // A bounded amount of work per turn: a peer that floods tiny
            // frames lets the other connections (and the application) run
            // in between. What is left in the buffer is decoded next turn.
            tokio::task::yield_now().await;
            continue;
        }
        size_read_buffer(read_buf, codec.envelope_in_progress(), &mut oversized);
        tokio::select! {
            read = reader.read_buf(read_buf) => {
                let ended = match read {
                    Ok(0) => true,
                    // A TLS stream that ends without close_notify is still
                    // its end for the frames inside: a cut frame shows in
                    // `decode_eof` below.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
                    Ok(_) => false,
                    Err(e) => return DisconnectReason::Io(e.to_string()),
                };
                if ended {
                    return match codec.decode_eof(read_buf) {
                        Ok(_) => DisconnectReason::PeerClosed,
                        Err(e) => DisconnectReason::Protocol(e.to_string()),
                    };
                }
            }
            () = &mut silence => return DisconnectReason::HeartbeatTimeout,
        }
    }
}

/// Makes room in the read buffer for the next read. Inside a large frame,
/// the buffer grows toward the frame's size with what has arrived (at most
/// doubling), so it is read in place with few copies while memory follows
/// the bytes received, not the length announced. Once a buffer has grown past
/// [`MAX_KEPT_BUFFER`] (`oversized` remembers it), it is given back as soon
/// as what is buffered and the frame in progress fit a small one again.
fn size_read_buffer(read_buf: &mut BytesMut, envelope: Option<usize>, oversized: &mut bool) {
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
            if spare < READ_CHUNK / 4 {
                read_buf.reserve(READ_CHUNK);
            }
        }
    }
    *oversized |= read_buf.capacity() > MAX_KEPT_BUFFER;
}

/// Counts frames of one kind a connection sent within a second, and
/// closes it past a limit.
struct PerSecond {
    limit: usize,
    what: &'static str,
    window_start: Instant,
    count: usize,
}

impl PerSecond {
    fn new(limit: usize, what: &'static str) -> Self {
        Self { limit, what, window_start: Instant::now(), count: 0 }
    }

    fn add(&mut self, count: usize) -> Result<(), DisconnectReason> {
        if count == 0 {
            return Ok(());
        }
        // The clock is read only for reads that carried such frames.
        let now = Instant::now();
        if now.duration_since(self.window_start) >= std::time::Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += count;
        if self.count > self.limit {
            return Err(DisconnectReason::Protocol(format!(
                "more than {} {} within a second",
                self.limit, self.what
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
    counters: &PeerCounters,
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
            open = std::future::poll_fn(|cx| outbox.poll_drain(cx, &shared.room, &mut acks, batch)) => {
                if !open {
                    return DisconnectReason::Closing;
                }
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
        counters.wrote(batch);
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
        // Stay scheduled for one more turn before parking on an empty outbox:
        // while senders keep pushing, the next batch builds up meanwhile and
        // they never have to wake (on a multi-thread runtime: unpark) a
        // parked writer for it.
        tokio::task::yield_now().await;
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
        // Small until there is traffic: an idle connection should cost little.
        Self { max_frame_length, buf: BytesMut::with_capacity(INITIAL_READ_BUFFER), segments: Vec::new() }
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
fn hand_back_unsent(
    shared: &Shared,
    handle: &PeerHandle,
    queued: Vec<Outgoing>,
    unconfirmed: &VecDeque<Outgoing>,
) {
    let peer = handle.id;
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
        handle.counters.record_dropped(dropped);
        warn!(dropped, "messages queued for a disconnected peer were dropped");
        shared.emit(Event::Dropped { peer: Some(peer), count: dropped, reason: DropReason::PeerGone });
    }
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
            size_read_buffer(buf, codec.envelope_in_progress(), &mut oversized);
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
