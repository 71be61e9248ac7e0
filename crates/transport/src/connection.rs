//! One connection's life: handshake, then a reader and a writer until it ends.
//!
//! Everything here is generic over the byte stream, so TCP, TLS, WebSocket or
//! an in-memory duplex all share the same handshake, heartbeat and I/O code.

use std::collections::VecDeque;
use std::io::{self};
use std::sync::Arc;

use bytes::BytesMut;
use smartsock_framing::{Codec, Frame, PROTOCOL_VERSION, PeerId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::codec::Decoder;
use tracing::{Instrument, debug, field, warn};

use crate::admission::Ticket;
use crate::chunk::Chunk;
use crate::direct::SharedWriter;
use crate::event::{DisconnectReason, DropReason, Event, RefusedReason, Side};
use crate::outbox::{Direct, Outbox};
use crate::peer::{Orphans, Outgoing, PeerHandle};
use crate::read_buffer::INITIAL_READ_BUFFER;
use crate::reader::read_loop;
use crate::shared::Shared;
use crate::stats::PeerCounters;
use crate::writer::{WriteLedger, write_loop};

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

/// Who may write to a connection's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Its writer, and a sender while the writer is idle (see
    /// [`Outbox`]): for a socket or a pipe, which a write made without a
    /// waker cannot upset.
    Direct,
    /// Only its writer: TLS and WebSocket (their writes drive their own
    /// state), and streams of the user's, which we do not know.
    WriterOnly,
}

/// Runs a connection on `stream` to its end.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    ticket: Option<Ticket>,
    direct: Writes,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::debug_span!("connection", peer = field::Empty, remote = %addr, role = %side);
    serve_in_span(shared, stream, side, addr, ticket, direct, span.clone()).instrument(span).await
}

async fn serve_in_span<S>(
    shared: Arc<Shared>,
    stream: S,
    side: Side,
    addr: Arc<str>,
    ticket: Option<Ticket>,
    direct: Writes,
    span: tracing::Span,
) -> Served
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = &shared.config;
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = SharedWriter::new(writer);
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
    // Boxed: the handshake's state is gone once it is done, instead of
    // taking room in every connection's task for its whole life.
    let outcome = tokio::select! {
        outcome = Box::pin(timeout_at(deadline, exchange)) => outcome.unwrap_or(Err(RefusedReason::Timeout)),
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

    let counters = Arc::new(PeerCounters::new(peer, addr.clone(), side, shared.stats.totals.clone()));
    let outbox = Outbox::new(
        config.outbox_capacity,
        config.outbox_bytes,
        config.ack_capacity,
        config.max_frame_length,
    );
    let outbox = Arc::new(match direct {
        Writes::Direct => {
            outbox.with_direct(Direct { stream: Box::new(writer.for_senders()), counters: counters.clone() })
        }
        Writes::WriterOnly => outbox,
    });
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

    // Kept out here so that, whichever side ends the connection, every frame
    // the writer took is settled below.
    let mut ledger = WriteLedger::default();
    let (reason, confirmed) = {
        let read = read_loop(&shared, peer, &outbox, &counters, &mut reader, &mut read_buf);
        let write = write_loop(&shared, &mut writer, &outbox, &counters, &mut ledger, hello_sent);
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
    // Closed first of all: from here no sender writes to the stream (the
    // writer's future may have been dropped parked, which let them), and a
    // handle is seen closed by whoever reacts to the disconnect event. What
    // is queued is handed back below.
    let unsent = outbox.close_chunks(&mut Vec::new());
    let WriteLedger { written, mut in_write, unwritten: mut queued } = ledger;
    let written = written + outbox.direct_written();
    for chunk in unsent {
        match chunk {
            // Part of it reached the peer: like a frame cut in a write.
            Chunk::Tail { .. } => in_write.push_back(chunk),
            chunk => chunk.decode_into(&mut queued),
        }
    }
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
        let left = queued.iter().filter(|item| is_message(item)).count() as u64
            + in_write.iter().map(Chunk::messages).sum::<u64>();
        let unconfirmed = if confirmed { left } else { left + written };
        if unconfirmed > 0 {
            warn!(unconfirmed, "closed before the peer confirmed it had read everything");
            shared.unconfirmed.fetch_add(unconfirmed, std::sync::atomic::Ordering::Relaxed);
        }
    }
    hand_back_unsent(&shared, &handle, queued, &in_write);
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

/// After a disconnect: frames never written that may go to another peer go
/// up as [`Orphans`]; the rest are dropped and counted. So is the message
/// a write was cut in, or the messages of a write still going when the
/// connection ended (`unconfirmed`): part of them may have reached the
/// peer, so sending them elsewhere could deliver them twice.
fn hand_back_unsent(
    shared: &Shared,
    handle: &PeerHandle,
    queued: Vec<Outgoing>,
    unconfirmed: &VecDeque<Chunk>,
) {
    let peer = handle.id;
    let mut frames = Vec::new();
    let mut dropped = unconfirmed.iter().map(Chunk::messages).sum::<u64>();
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
    //! What an idle connection's task costs: its future is allocated for the
    //! connection's whole life, whatever the traffic.

    use super::*;
    use crate::{Transport, TransportConfig};

    #[tokio::test]
    async fn a_connections_task_holds_the_stage_it_is_in_not_the_largest_of_all() {
        let parts = Transport::new(TransportConfig::default()).unwrap();
        let shared = parts.transport.shared.clone();
        // What the accept loop spawns: with TLS and WebSocket compiled in,
        // it was 17 KiB (room for a TLS session and the protocol over every
        // kind of stream) before its stages were boxed.
        let (stream, _peer) = tokio::io::duplex(64);
        let accepted = crate::upgrade::accepted(shared.clone(), stream, "x".into(), None, Default::default());
        assert!(std::mem::size_of_val(&accepted) <= 512, "{} bytes", std::mem::size_of_val(&accepted));
        // The protocol itself: reader and writer side by side.
        let (stream, _peer) = tokio::io::duplex(64);
        let serve = serve(shared, stream, Side::Bind, "x".into(), None, Writes::Direct);
        assert!(std::mem::size_of_val(&serve) <= 3 * 1024, "{} bytes", std::mem::size_of_val(&serve));
    }
}
