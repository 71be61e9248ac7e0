//! A connection's writer: takes the whole outbox at once, encodes it into
//! as few writes as the stream allows, heartbeats when idle.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use smartsock_framing::{Frame, FrameHeader, MsgId};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};

use crate::event::DisconnectReason;
use crate::outbox::{Chunk, Outbox};
use crate::reader::MAX_KEPT_BUFFER;
use crate::shared::Shared;
use crate::stats::PeerCounters;

/// Drains the outbox in batches, one write each (ACKs first); sends a
/// HEARTBEAT after the heartbeat interval with nothing sent; on close,
/// flushes what is queued and shuts the write side down. The HELLO was the last frame sent before it starts.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    shared: &Shared,
    writer: &mut W,
    outbox: &Outbox,
    counters: &PeerCounters,
    batch: &mut VecDeque<Chunk>,
    written: &mut u64,
    hello_sent: Instant,
) -> DisconnectReason {
    let config = &shared.config;
    let mut encoder = BatchEncoder::default();
    let mut acks = Vec::new();
    let idle = sleep_until(hello_sent + config.heartbeat_interval);
    tokio::pin!(idle);
    loop {
        let mut heartbeat = false;
        let closing = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => {
                batch.extend(outbox.close_chunks(&mut acks));
                true
            }
            open = std::future::poll_fn(|cx| outbox.poll_drain(cx, &shared.room, &mut acks, batch, &mut encoder.spare)) => {
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
        let (messages, bytes) =
            batch.iter().fold((0, 0), |(n, b), chunk| (n + chunk.messages(), b + chunk.payload_bytes()));
        *written += messages;
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
        // Stay scheduled for one more turn before parking on an empty outbox:
        // while senders keep pushing, the next batch builds up meanwhile and
        // they never have to wake (on a multi-thread runtime: unpark) a
        // parked writer for it.
        tokio::task::yield_now().await;
    }
}

/// Writes a batch in as few writes as the stream allows: the ACKs and a
/// heartbeat encoded here, then the outbox's chunks (runs of small frames
/// that the senders encoded already, and large payloads from their own
/// buffers), with one vectored write where the stream supports it.
#[derive(Default)]
struct BatchEncoder {
    /// ACKs and heartbeats; also where everything is copied for a stream
    /// without vectored writes.
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
            Chunk::Encoded { .. } => None,
        }));
        let mut headers = self.headers.iter();
        let mut segments: Vec<&[u8]> = Vec::with_capacity(1 + 2 * batch.len());
        if !self.head.is_empty() {
            segments.push(&self.head);
        }
        for chunk in batch {
            match chunk {
                Chunk::Encoded { bytes, .. } => segments.push(bytes),
                Chunk::Own(item) => {
                    segments.push(headers.next().expect("a header per large frame"));
                    segments.push(item.frame.payload());
                }
            }
        }
        match segments.as_slice() {
            [] => {}
            [one] => writer.write_all(one).await?,
            _ if writer.is_write_vectored() => write_all_vectored(writer, &mut segments).await?,
            _ => {
                // One write of a copy beats a write per segment.
                let mut all = BytesMut::with_capacity(segments.iter().map(|s| s.len()).sum());
                for segment in &segments {
                    all.extend_from_slice(segment);
                }
                writer.write_all(&all).await?;
            }
        }
        writer.flush().await
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
/// most 64 slices each.
async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, segments: &mut [&[u8]]) -> io::Result<()> {
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
