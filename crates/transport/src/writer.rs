//! A connection's writer: takes the whole outbox at once, encodes it into
//! as few writes as the stream allows, heartbeats when idle.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smartsock_framing::{Frame, MsgId};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};
use tracing::warn;

use crate::event::DisconnectReason;
use crate::outbox::Outbox;
use crate::peer::Outgoing;
use crate::shared::Shared;
use crate::stats::PeerCounters;

use crate::reader::{INITIAL_READ_BUFFER, MAX_KEPT_BUFFER, READ_CHUNK};

/// Payloads at least this long are written from their own buffer (vectored
/// write) instead of being copied into the batch buffer.
const VECTORED_MIN: usize = 16 * 1024;

/// Drains the outbox in batches, one write each (ACKs first); sends a
/// HEARTBEAT after the heartbeat interval with nothing sent; on close,
/// flushes what is queued and shuts the write side down. The HELLO was the last frame sent before it starts.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
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
