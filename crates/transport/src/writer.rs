//! A connection's writer: takes the whole outbox at once, encodes it into
//! as few writes as the stream allows, heartbeats when idle.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use smartsock_framing::{Frame, FrameHeader, LENGTH_PREFIX_LEN, MsgId};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};

use crate::chunk::Chunk;
use crate::event::DisconnectReason;
use crate::outbox::{IDLE_KEPT_ENCODED, Outbox, Queued, take_if_larger};
use crate::peer::Outgoing;
use crate::read_buffer::MAX_KEPT_BUFFER;
use crate::shared::Shared;
use crate::stats::PeerCounters;

/// What the writer did with the frames it took out of the outbox: kept
/// outside its future, so that when the connection ends (whichever side
/// ends it) each frame is settled as written, lost or free to go elsewhere.
#[derive(Default)]
pub(crate) struct WriteLedger {
    /// Messages the stream took: they may still be in flight, so if a close
    /// cannot be confirmed none of them is known to have reached the peer.
    pub(crate) written: u64,
    /// Taken from the outbox, in a write that has not finished: part of it
    /// may have reached the peer, so it is neither written nor free.
    pub(crate) in_write: VecDeque<Chunk>,
    /// Taken from the outbox but never given to the stream (a failed write
    /// stopped before them): as free to go to another peer as the frames
    /// still queued, and ahead of them.
    pub(crate) unwritten: Vec<Outgoing>,
}

/// Drains the outbox in batches, one write each (ACKs first); sends a
/// HEARTBEAT after the heartbeat interval with nothing written (by it, or
/// by a sender itself); on close,
/// flushes what is queued and shuts the write side down. The HELLO was the
/// last frame sent before it starts.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    shared: &Shared,
    writer: &mut W,
    outbox: &Outbox,
    counters: &PeerCounters,
    ledger: &mut WriteLedger,
    hello_sent: Instant,
) -> DisconnectReason {
    let batch = &mut ledger.in_write;
    let config = &shared.config;
    let mut encoder = BatchEncoder::default();
    let mut acks = Vec::new();
    let idle = sleep_until(hello_sent + config.heartbeat_interval);
    tokio::pin!(idle);
    // Writes since the writer last parked on an empty outbox (see below).
    let mut writes_in_a_row = 0;
    loop {
        let mut heartbeat = false;
        let closing = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => {
                batch.extend(outbox.close_chunks(&mut acks));
                true
            }
            open = std::future::poll_fn(|cx| {
                let queued = outbox.poll_queued(cx);
                if queued.is_pending() {
                    writes_in_a_row = 0;
                }
                queued
            }) => {
                if !open {
                    return DisconnectReason::Closing;
                }
                gather(outbox).await;
                // Ready at once (only this writer takes from the outbox):
                // the whole of it in one take, so a batch is never more than
                // one outbox-full, and one run buffer serves it.
                let spare = &mut encoder.spare;
                if !std::future::poll_fn(|cx| outbox.poll_drain(cx, &shared.room, &mut acks, batch, spare)).await {
                    return DisconnectReason::Closing;
                }
                false
            }
            () = &mut idle => {
                // Senders' own writes count as traffic too: no heartbeat
                // until an interval after the last of them.
                if let Some(at) = outbox.last_direct_write() {
                    let due = at + config.heartbeat_interval;
                    if due > Instant::now() {
                        idle.as_mut().reset(due);
                        continue;
                    }
                }
                // Idle for an interval: a burst's large buffers go.
                outbox.release_idle_buffers();
                encoder.release_idle_buffers();
                // A sender may have just written part of a frame itself:
                // its tail goes before the heartbeat.
                if outbox.take_for_heartbeat(&mut acks, batch) {
                    shared.room.notify();
                }
                heartbeat = true;
                false
            }
        };
        let mut sent = 0;
        if let Err(e) = encoder.write(writer, &acks, batch, heartbeat, &mut sent).await {
            let taken = encoder.chunk_bytes_taken(batch, sent);
            let (messages, bytes) = settle_failed_write(batch, taken, &mut ledger.unwritten);
            ledger.written += messages;
            counters.wrote(messages, bytes);
            return DisconnectReason::Io(e.to_string());
        }
        let (messages, bytes) =
            batch.iter().fold((0, 0), |(n, b), chunk| (n + chunk.messages(), b + chunk.payload_bytes()));
        ledger.written += messages;
        counters.wrote(messages, bytes);
        acks.clear();
        encoder.recycle(batch);
        if closing {
            // Half-close: the peer reads our end after everything we wrote;
            // the read side stays open (see `serve_in_span`).
            if let Err(e) = writer.shutdown().await {
                return DisconnectReason::Io(e.to_string());
            }
            return DisconnectReason::Closing;
        }
        idle.as_mut().reset(Instant::now() + config.heartbeat_interval);
        // Look at the outbox again at once, without giving up the thread:
        // on a multi-thread runtime each yield also wakes an idle worker to
        // look for work (tokio's scheduler does so for a task that yields),
        // which from `main` on 2 workers cost more than the batch it let
        // grow. But this loop shares its task with the connection's reader,
        // which runs only while the writer waits or yields: a writer that
        // always finds a batch waiting yields after a few writes in a row,
        // so that the peer's ACKs and heartbeats are still read.
        writes_in_a_row += 1;
        if writes_in_a_row >= READER_TURN_AFTER {
            writes_in_a_row = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Writes in a row, each finding the next batch already waiting, after
/// which the writer yields once so that the connection's reader runs.
pub(crate) const READER_TURN_AFTER: u32 = 4;

/// Turns a writer gives senders still adding to a small batch.
const MAX_GATHER_TURNS: usize = 4;
/// A batch about this large on the wire is taken without waiting.
const GATHER_BYTES: usize = 32 * 1024;

/// About what `queued` takes on the wire: its payloads, and a length
/// prefix and type byte a frame (an at-least-once id is not counted).
fn wire_estimate(queued: Queued) -> usize {
    queued.bytes + queued.frames * (LENGTH_PREFIX_LEN + 1)
}

/// While senders are still adding to a small batch in the outbox, gives
/// them a few turns before the writer takes it. On a multi-thread runtime a
/// woken writer runs beside the sender and would otherwise write every few
/// dozen messages, a system call each (a stream of 16-byte messages from
/// `main` on 2 workers made about 100k writes a second, 47 messages each;
/// with this, about half as many, of about 100). Returns as soon as the batch stops growing,
/// reaches the outbox's mark or about `GATHER_BYTES`; at once for a lone
/// message (a request, a reply). Takes nothing: the batch stays in the
/// outbox, within its marks, until the writer takes it whole.
async fn gather(outbox: &Outbox) {
    let mut queued = outbox.queued();
    if queued.frames < 2 {
        return;
    }
    for _ in 0..MAX_GATHER_TURNS {
        if queued.at_mark || wire_estimate(queued) >= GATHER_BYTES {
            return;
        }
        tokio::task::yield_now().await;
        let now = outbox.queued();
        if now.frames <= queued.frames {
            return;
        }
        queued = now;
    }
}

/// Writes a batch in as few writes as the stream allows: the ACKs and a
/// heartbeat encoded here, then the outbox's chunks (runs of small frames
/// that the senders encoded already, and large payloads from their own
/// buffers), with one vectored write where the stream supports it.
#[derive(Default)]
struct BatchEncoder {
    /// ACKs and heartbeats.
    head: BytesMut,
    /// The headers of the batch's large frames.
    headers: Vec<FrameHeader>,
    /// An emptied encode buffer, given back to the outbox for reuse.
    spare: Option<BytesMut>,
}

impl BatchEncoder {
    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        acks: &[MsgId],
        batch: &VecDeque<Chunk>,
        heartbeat: bool,
        sent: &mut usize,
    ) -> io::Result<()> {
        self.head.clear();
        for &id in acks {
            Frame::Ack(id).encode_into(&mut self.head);
        }
        if heartbeat {
            Frame::Heartbeat.encode_into(&mut self.head);
        }
        self.headers.clear();
        self.headers.extend(batch.iter().filter_map(|chunk| match chunk {
            Chunk::Own(item) => Some(item.frame.header()),
            Chunk::Encoded { .. } | Chunk::Tail { .. } => None,
        }));
        let mut headers = self.headers.iter();
        let mut segments: Vec<&[u8]> = Vec::with_capacity(1 + 2 * batch.len());
        let mut chunks = batch.iter().peekable();
        // The rest of a frame a sender began goes out before anything else.
        if let Some(Chunk::Tail { bytes, .. }) = chunks.next_if(|chunk| matches!(chunk, Chunk::Tail { .. })) {
            segments.push(bytes);
        }
        if !self.head.is_empty() {
            segments.push(&self.head);
        }
        for chunk in chunks {
            match chunk {
                Chunk::Encoded { bytes, .. } | Chunk::Tail { bytes, .. } => segments.push(bytes),
                Chunk::Own(item) => {
                    segments.push(headers.next().expect("a header per large frame"));
                    segments.push(item.frame.payload());
                }
            }
        }
        let copy;
        if segments.len() > 1 && !writer.is_write_vectored() {
            // One write of a copy beats a write per segment.
            copy = segments.concat();
            segments = vec![copy.as_slice()];
        }
        write_all_vectored(writer, &mut segments, sent).await?;
        writer.flush().await
    }

    /// Of the `sent` bytes a write of `batch` got onto the stream, those of
    /// its chunks (not of the ACKs and heartbeat, which follow a leading
    /// tail and precede everything else).
    fn chunk_bytes_taken(&self, batch: &VecDeque<Chunk>, sent: usize) -> usize {
        let tail = match batch.front() {
            Some(Chunk::Tail { bytes, .. }) => bytes.len(),
            _ => 0,
        };
        sent.min(tail) + sent.saturating_sub(tail + self.head.len())
    }

    /// Lets go of the encode buffer kept for the outbox if it is larger
    /// than an idle connection keeps ([`IDLE_KEPT_ENCODED`]).
    fn release_idle_buffers(&mut self) {
        drop(take_if_larger(&mut self.spare, IDLE_KEPT_ENCODED));
    }

    /// Empties `batch`, keeping one encode buffer for the outbox to reuse.
    fn recycle(&mut self, batch: &mut VecDeque<Chunk>) {
        for chunk in batch.drain(..) {
            if let (Chunk::Encoded { mut bytes, .. }, None) = (chunk, &self.spare) {
                bytes.clear();
                self.spare = Some(bytes);
            }
        }
        if self.head.capacity() > MAX_KEPT_BUFFER {
            self.head = BytesMut::new();
        }
    }
}

/// Writes every byte of `segments`, in order, with vectored writes of at
/// most 64 slices each (a plain write for one); counts in `sent` the bytes
/// the stream took, so that a failed write knows where it stopped.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    segments: &mut [&[u8]],
    sent: &mut usize,
) -> io::Result<()> {
    let mut first = 0;
    while first < segments.len() && segments[first].is_empty() {
        first += 1;
    }
    while first < segments.len() {
        let mut written = if first + 1 == segments.len() {
            writer.write(segments[first]).await?
        } else {
            let slices: Vec<IoSlice<'_>> =
                segments[first..].iter().take(64).map(|s| IoSlice::new(s)).collect();
            writer.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *sent += written;
        while written > 0 {
            let segment = &mut segments[first];
            let step = written.min(segment.len());
            *segment = &segment[step..];
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

/// Settles a batch whose write failed after the stream took `taken` bytes
/// of its frames (ACKs and heartbeat not counted): the frames wholly taken
/// were written (returned as messages and payload bytes: in flight, they may
/// or may not reach the peer); the frames the stream never took go to
/// `unwritten`, free to go to another peer without risk of a duplicate; the
/// one frame cut in the middle, if any, stays in `batch`, lost.
fn settle_failed_write(
    batch: &mut VecDeque<Chunk>,
    mut taken: usize,
    unwritten: &mut Vec<Outgoing>,
) -> (u64, u64) {
    let (mut messages, mut bytes) = (0, 0);
    let mut items = Vec::new();
    for chunk in std::mem::take(batch) {
        if let Chunk::Tail { bytes: tail, messages: n, payload } = &chunk {
            // The rest of a frame a sender began: first in the batch.
            if taken >= tail.len() {
                taken -= tail.len();
                messages += u64::from(*n);
                bytes += *payload as u64;
            } else {
                taken = 0;
                batch.push_back(chunk);
            }
            continue;
        }
        chunk.decode_into(&mut items);
        for item in items.drain(..) {
            let len = item.frame.encoded_len();
            if taken >= len {
                taken -= len;
                if matches!(item.frame, Frame::Data(_) | Frame::DataReq { .. }) {
                    messages += 1;
                    bytes += item.frame.payload().len() as u64;
                }
            } else if taken > 0 {
                taken = 0;
                batch.push_back(Chunk::Own(item));
            } else {
                unwritten.push(item);
            }
        }
    }
    (messages, bytes)
}

#[cfg(test)]
mod tests;
