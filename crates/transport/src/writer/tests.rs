//! The writer. A write that fails part way: what the stream took is
//! written, what it never took is free to go elsewhere, the frame it cut is
//! lost. Gathering a batch. What an idle writer keeps.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::*;
use crate::outbox::Outbox;
use crate::room::RoomSignal;

/// Takes `room` bytes, at most `step` per write, then fails every write.
struct Breaks {
    room: usize,
    step: usize,
    vectored: bool,
    taken: Vec<u8>,
}

impl AsyncWrite for Breaks {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.step).min(self.room);
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        self.room -= n;
        self.taken.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }
    fn is_write_vectored(&self) -> bool {
        self.vectored
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn data(byte: u8, len: usize) -> Frame {
    Frame::Data(Bytes::from(vec![byte; len]))
}

/// Three small frames (one encoded run) and a large one (its own chunk),
/// as the writer takes them from the outbox.
fn batch() -> (Vec<Frame>, VecDeque<Chunk>) {
    let frames = vec![data(1, 10), data(2, 10), data(3, 10), data(4, crate::outbox::VECTORED_MIN)];
    let outbox = Outbox::new(16, 1 << 20, 16, 1 << 20);
    for frame in &frames {
        outbox.try_push_frame(frame, true).unwrap();
    }
    (frames, outbox.close_chunks(&mut Vec::new()))
}

async fn fail_after(room: usize, vectored: bool) -> (Vec<Frame>, WriteLedger, (u64, u64)) {
    let (frames, chunks) = batch();
    let mut ledger = WriteLedger { in_write: chunks, ..WriteLedger::default() };
    let mut writer = Breaks { room, step: 7, vectored, taken: Vec::new() };
    let mut encoder = BatchEncoder::default();
    let mut sent = 0;
    let acks = [MsgId::random()];
    let result = encoder.write(&mut writer, &acks, &ledger.in_write, true, &mut sent).await;
    assert!(result.is_err());
    assert_eq!(sent, room);
    assert_eq!(writer.taken.len(), room);
    let taken = sent.saturating_sub(encoder.head.len());
    let wrote = settle_failed_write(&mut ledger.in_write, taken, &mut ledger.unwritten);
    (frames, ledger, wrote)
}

#[tokio::test]
async fn a_failed_write_splits_its_batch_where_the_stream_stopped() {
    for vectored in [true, false] {
        let head = Frame::Ack(MsgId::random()).encoded_len() + Frame::Heartbeat.encoded_len();
        let one = data(1, 10).encoded_len();
        // The first frame whole and three bytes of the second.
        let (frames, ledger, wrote) = fail_after(head + one + 3, vectored).await;
        assert_eq!(wrote, (1, 10));
        assert_eq!(ledger.in_write.len(), 1);
        assert_eq!(ledger.in_write.iter().map(Chunk::messages).sum::<u64>(), 1);
        let unwritten: Vec<_> = ledger.unwritten.iter().map(|item| item.frame.clone()).collect();
        assert_eq!(unwritten, frames[2..]);
        assert!(ledger.unwritten.iter().all(|item| item.reroutable));
    }
}

#[tokio::test]
async fn a_senders_tail_goes_out_before_the_acks_and_heartbeat_then_the_rest() {
    let tail = BytesMut::from(&b"tail"[..]);
    let mut run = BytesMut::new();
    data(9, 3).encode_into(&mut run);
    let batch: VecDeque<Chunk> = [
        Chunk::Tail { bytes: tail, messages: 1, payload: 1 },
        Chunk::Encoded { bytes: run.clone(), messages: 1, payload: 3, reroutable: true },
    ]
    .into();
    let id = MsgId::from_bytes([4; 16]);
    let (mut wire, mut sent) = (Vec::new(), 0);
    let mut encoder = BatchEncoder::default();
    encoder.write(&mut wire, &[id], &batch, true, &mut sent).await.unwrap();
    let mut expected = BytesMut::from(&b"tail"[..]);
    Frame::Ack(id).encode_into(&mut expected);
    Frame::Heartbeat.encode_into(&mut expected);
    expected.extend_from_slice(&run);
    assert_eq!(wire, expected);
    // Of what the stream took, the chunks' bytes: the tail, then after
    // the ACK and heartbeat, the rest.
    let head = encoder.head.len();
    assert_eq!(encoder.chunk_bytes_taken(&batch, 2), 2);
    assert_eq!(encoder.chunk_bytes_taken(&batch, 4 + head), 4);
    assert_eq!(encoder.chunk_bytes_taken(&batch, 4 + head + 5), 9);
}

#[tokio::test]
async fn a_write_that_fails_at_a_frame_boundary_loses_no_frame() {
    let head = Frame::Ack(MsgId::random()).encoded_len() + Frame::Heartbeat.encoded_len();
    let two = 2 * data(1, 10).encoded_len();
    let (frames, ledger, wrote) = fail_after(head + two, true).await;
    assert_eq!(wrote, (2, 20));
    assert!(ledger.in_write.is_empty());
    let unwritten: Vec<_> = ledger.unwritten.iter().map(|item| item.frame.clone()).collect();
    assert_eq!(unwritten, frames[2..]);
    // Nothing of the frames taken: everything is free to go elsewhere.
    let (frames, ledger, wrote) = fail_after(head - 1, true).await;
    assert_eq!(wrote, (0, 0));
    assert!(ledger.in_write.is_empty());
    assert_eq!(ledger.unwritten.len(), frames.len());
}

/// An outbox of `capacity` frames holding `queued` small ones.
fn outbox_with(capacity: usize, queued: usize) -> std::sync::Arc<Outbox> {
    let outbox = std::sync::Arc::new(Outbox::new(capacity, 1 << 20, 16, 1 << 20));
    for i in 0..queued {
        outbox.try_push_frame(&data(i as u8, 10), true).unwrap();
    }
    outbox
}

fn waiting(outbox: &Outbox) -> usize {
    outbox.queued().frames
}

/// A task that pushes `per_turn` frames into `outbox` each time it
/// runs (those that find it full are dropped), for `turns` turns,
/// yielding in between.
fn pusher(outbox: &std::sync::Arc<Outbox>, per_turn: usize, turns: usize) -> tokio::task::JoinHandle<()> {
    let outbox = outbox.clone();
    tokio::spawn(async move {
        for _ in 0..turns {
            for _ in 0..per_turn {
                let _ = outbox.try_push_frame(&data(9, 10), true);
            }
            tokio::task::yield_now().await;
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_is_gathered_until_it_stops_growing() {
    let outbox = outbox_with(4096, 2);
    // Three turns of three frames, then the sender stops.
    let sender = pusher(&outbox, 3, 3);
    gather(&outbox).await;
    assert_eq!(waiting(&outbox), 2 + 9);
    sender.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_message_is_taken_at_once() {
    let outbox = outbox_with(4096, 1);
    let sender = pusher(&outbox, 3, 1);
    gather(&outbox).await;
    // Not one turn given: the sender has not run yet.
    assert_eq!(waiting(&outbox), 1);
    sender.await.unwrap();
    assert_eq!(waiting(&outbox), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn gathering_stops_at_its_byte_mark_and_after_its_turns() {
    // One frame short of the byte mark, then a turn that passes it: no
    // turn after that.
    let per_frame = wire_estimate(Queued { frames: 1, bytes: 10, at_mark: false });
    let short = GATHER_BYTES / per_frame - 1;
    let outbox = outbox_with(4096, short);
    let sender = pusher(&outbox, 2, 2);
    gather(&outbox).await;
    assert_eq!(waiting(&outbox), short + 2);
    sender.await.unwrap();
    // A sender that never pauses gets exactly MAX_GATHER_TURNS turns.
    let outbox = outbox_with(4096, 2);
    let sender = pusher(&outbox, 1, 100);
    gather(&outbox).await;
    assert_eq!(waiting(&outbox), 2 + MAX_GATHER_TURNS);
    sender.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_gathered_batch_is_one_outbox_full_at_most() {
    // Capacity 8: 2 queued, then 4 a turn: 6, then 8 (the outbox is
    // full, the sender's last two are refused), and gathering stops.
    let outbox = outbox_with(8, 2);
    let sender = pusher(&outbox, 4, 2);
    gather(&outbox).await;
    assert_eq!(outbox.queued(), Queued { frames: 8, bytes: 80, at_mark: true });
    sender.await.unwrap();
    // The writer's take is that outbox-full, whole.
    let mut batch = VecDeque::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let took = outbox.poll_drain(&mut cx, &RoomSignal::default(), &mut Vec::new(), &mut batch, &mut None);
    assert_eq!(took, Poll::Ready(true));
    assert_eq!(batch.iter().map(Chunk::messages).sum::<u64>(), 8);
}

/// A writer on an in-memory stream whose peer end is returned, with a
/// heartbeat every second; the transport is returned to be kept alive (a
/// transport dropped is closed, and its writers with it).
fn idle_test_writer() -> (
    std::sync::Arc<Outbox>,
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<DisconnectReason>,
    crate::TransportParts,
) {
    let heartbeat_interval = std::time::Duration::from_secs(1);
    let config = crate::TransportConfig { heartbeat_interval, ..Default::default() };
    let parts = crate::Transport::new(config).expect("valid");
    let shared = parts.transport.shared.clone();
    let outbox = std::sync::Arc::new(Outbox::new(4096, 1 << 20, 16, 1 << 20));
    let id = smartsock_framing::PeerId::from_bytes([5; 16]);
    let counters = PeerCounters::new(id, "x".into(), crate::Side::Connect, Default::default());
    let (mut stream, peer) = tokio::io::duplex(4 << 20);
    let writer = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let mut ledger = WriteLedger::default();
            write_loop(&shared, &mut stream, &outbox, &counters, &mut ledger, Instant::now()).await
        })
    };
    (outbox, peer, writer, parts)
}

/// Queues `frames` copies of `frame` and reads them at the peer's end.
async fn push_and_read(outbox: &Outbox, peer: &mut tokio::io::DuplexStream, frame: &Frame, frames: usize) {
    use tokio::io::AsyncReadExt;
    for _ in 0..frames {
        outbox.try_push_frame(frame, true).unwrap();
    }
    let mut received = vec![0; frames * frame.encoded_len()];
    peer.read_exact(&mut received).await.unwrap();
}

/// Reads the heartbeat an interval of silence brings.
async fn read_heartbeat(peer: &mut tokio::io::DuplexStream) {
    use tokio::io::AsyncReadExt;
    let mut heartbeat = BytesMut::new();
    Frame::Heartbeat.encode_into(&mut heartbeat);
    let mut received = vec![0; heartbeat.len()];
    peer.read_exact(&mut received).await.unwrap();
    assert_eq!(received, heartbeat[..]);
}

const BURST_FRAMES: usize = 512;

/// A connection idle for a heartbeat interval lets go of the large encode
/// buffer a burst left in the outbox for reuse, and sends its heartbeat.
#[tokio::test(start_paused = true)]
async fn an_idle_outbox_lets_go_of_a_bursts_encode_buffer() {
    let (outbox, mut peer, writer, parts) = idle_test_writer();
    // A burst of 512 KiB, then one small frame: the writer takes the small
    // one's run and gives the burst's emptied buffer back to the outbox.
    let burst = data(1, 1024);
    push_and_read(&outbox, &mut peer, &burst, BURST_FRAMES).await;
    push_and_read(&outbox, &mut peer, &data(2, 10), 1).await;
    let burst_len = BURST_FRAMES * burst.encoded_len();
    assert!(outbox.kept_capacity() >= burst_len, "the burst's buffer is kept while the connection is busy");
    read_heartbeat(&mut peer).await;
    assert_eq!(outbox.kept_capacity(), 0, "let go of when idle");
    writer.abort();
    drop(parts);
}

/// The same when the burst's buffer is still the writer's own when the
/// connection falls idle: after the heartbeat, the next take hands the
/// outbox no large buffer.
#[tokio::test(start_paused = true)]
async fn an_idle_writer_lets_go_of_a_bursts_encode_buffer() {
    let (outbox, mut peer, writer, parts) = idle_test_writer();
    push_and_read(&outbox, &mut peer, &data(1, 1024), BURST_FRAMES).await;
    read_heartbeat(&mut peer).await;
    push_and_read(&outbox, &mut peer, &data(2, 10), 1).await;
    assert!(
        outbox.kept_capacity() <= crate::outbox::IDLE_KEPT_ENCODED,
        "{} bytes kept",
        outbox.kept_capacity()
    );
    writer.abort();
    drop(parts);
}
