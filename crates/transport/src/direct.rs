//! The write half of a connection's stream, shared by its writer task and
//! its senders, so that a sender may write a frame itself when the writer
//! is idle (see [`Outbox`](crate::outbox::Outbox)): a reply or a request
//! then goes out from the task that sends it, with no hand-off to the
//! writer's task (on a multi-thread runtime, a wake-up of another thread
//! per message, the larger part of a round trip).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

/// What a write made without waiting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WroteNow {
    /// Bytes the stream took (0 if it would have had to wait, or failed).
    pub(crate) bytes: usize,
    /// Whether the stream holds none of them back (a plain socket never
    /// does): if not, the writer must flush it.
    pub(crate) flushed: bool,
}

/// A stream a sender may write to without waiting.
pub(crate) trait WriteNow: Send + Sync {
    /// Writes what the stream takes of `bytes` now, in one write, without
    /// waiting or registering for a wake-up that anyone waits for. A
    /// failure counts as nothing written: the writer meets it again and
    /// ends the connection.
    fn write_now(&self, bytes: &[u8]) -> WroteNow;
}

/// A write half behind a mutex: the writer task writes through it as any
/// `AsyncWrite` (a lock per poll, so per batch), senders through
/// [`WriteNow`]. Nobody holds the lock across an await.
pub(crate) struct SharedWriter<W>(Arc<Mutex<W>>);

impl<W> SharedWriter<W> {
    pub(crate) fn new(writer: W) -> Self {
        Self(Arc::new(Mutex::new(writer)))
    }

    fn lock(&self) -> MutexGuard<'_, W> {
        lock(&self.0)
    }

    /// A handle for senders that does not keep the stream open: the
    /// connection's end closes it, whoever still holds the outbox (an
    /// untaken message's ACK handle does).
    pub(crate) fn for_senders(&self) -> SendersWriter<W> {
        SendersWriter(Arc::downgrade(&self.0))
    }
}

fn lock<W>(writer: &Mutex<W>) -> MutexGuard<'_, W> {
    // A panic inside a write leaves nothing of ours half-changed.
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The senders' way to a [`SharedWriter`]'s stream, while it is open.
pub(crate) struct SendersWriter<W>(Weak<Mutex<W>>);

impl<W: AsyncWrite + Unpin + Send> WriteNow for SendersWriter<W> {
    fn write_now(&self, bytes: &[u8]) -> WroteNow {
        let Some(writer) = self.0.upgrade() else {
            return WroteNow { bytes: 0, flushed: true };
        };
        // Only called while the writer task is idle, parked on an empty
        // outbox: it waits on no write readiness that the no-op waker could
        // stand in for, and it registers its own again on its next write.
        let mut cx = Context::from_waker(Waker::noop());
        let mut writer = lock(&writer);
        let bytes = match Pin::new(&mut *writer).poll_write(&mut cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        let flushed = bytes == 0 || matches!(Pin::new(&mut *writer).poll_flush(&mut cx), Poll::Ready(Ok(())));
        WroteNow { bytes, flushed }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SharedWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! Over loopback TCP: requests and replies go out from their senders'
    //! tasks, and a stream of sends still goes out in the writer's batches.

    use std::time::Duration;

    use bytes::Bytes;
    use smartsock_framing::Frame;

    use crate::{Outgoing, PeerHandle, Transport, TransportConfig, TransportParts};

    async fn the_peer(parts: &TransportParts) -> PeerHandle {
        let mut peers = parts.transport.peers();
        let table = tokio::time::timeout(Duration::from_secs(10), peers.wait_for(|table| table.len() == 1))
            .await
            .expect("connected within 10 s")
            .expect("the transport is open")
            .clone();
        table[0].clone()
    }

    async fn recv(parts: &TransportParts) -> Bytes {
        tokio::time::timeout(Duration::from_secs(10), parts.inbound.recv())
            .await
            .expect("a message within 10 s")
            .expect("the transport is open")
            .payload
    }

    fn send(peer: &PeerHandle, payload: Vec<u8>) {
        peer.try_send(Outgoing::to_any_peer(Frame::Data(payload.into()))).expect("room in the outbox");
    }

    // One thread, so that a writer that wrote has parked again before the
    // answer arrives, and the counts below are exact.
    #[tokio::test]
    async fn requests_and_replies_are_written_by_their_senders_and_streams_by_the_writer() {
        let server = Transport::new(TransportConfig::default()).unwrap();
        let client = Transport::new(TransportConfig::default()).unwrap();
        let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
        client.transport.connect(&addr.to_string()).unwrap();
        let (to_server, to_client) = (the_peer(&client).await, the_peer(&server).await);

        const ROUNDS: u8 = 50;
        for n in 0..ROUNDS {
            send(&to_server, vec![n; 3]);
            assert_eq!(recv(&server).await[..], [n; 3]);
            send(&to_client, vec![n; 5]);
            assert_eq!(recv(&client).await[..], [n; 5]);
        }
        // Every reply followed a request; every request but the first
        // followed a reply.
        assert_eq!(to_client.outbox.direct_written(), u64::from(ROUNDS));
        assert_eq!(to_server.outbox.direct_written(), u64::from(ROUNDS - 1));

        // A stream, with nothing coming back: the first frame (after the
        // last reply) goes out from the sender, the rest from the writer,
        // in order.
        let before = to_server.outbox.direct_written();
        for n in 0..200u8 {
            send(&to_server, vec![n]);
        }
        for n in 0..200u8 {
            assert_eq!(recv(&server).await[..], [n]);
        }
        assert_eq!(to_server.outbox.direct_written() - before, 1);
        let stats = client.transport.stats();
        assert_eq!(stats.peers[0].traffic.messages_out, u64::from(ROUNDS) + 200);
    }

    // Paused time, over an in-memory pipe: the writer's heartbeat clock.
    #[tokio::test(start_paused = true)]
    async fn a_senders_own_writes_put_the_writers_heartbeat_off() {
        use std::sync::Arc;

        use bytes::BytesMut;
        use tokio::io::AsyncReadExt;
        use tokio_util::codec::Decoder;

        use crate::outbox::{Direct, Outbox};
        use crate::writer::{WriteLedger, write_loop};

        let config = TransportConfig { heartbeat_interval: Duration::from_secs(1), ..Default::default() };
        let parts = Transport::new(config).unwrap();
        let shared = parts.transport.shared.clone();
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut writer = super::SharedWriter::new(near);
        let id = smartsock_framing::PeerId::from_bytes([3; 16]);
        let counters =
            Arc::new(crate::stats::PeerCounters::new(id, "x".into(), crate::Side::Bind, Arc::default()));
        let direct = Direct { stream: Box::new(writer.for_senders()), counters: counters.clone() };
        let outbox = Arc::new(Outbox::new(16, 1 << 20, 16, 1 << 24).with_direct(direct));
        let start = tokio::time::Instant::now();
        let task = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut ledger = WriteLedger::default();
                write_loop(&shared, &mut writer, &outbox, &counters, &mut ledger, start).await
            })
        };
        // What reached the far end: payloads, and heartbeats as 0.
        let mut wire = BytesMut::new();
        let mut codec = smartsock_framing::Codec::new();
        let mut read = async |wire: &mut BytesMut| {
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), far.read_buf(wire)).await {
                assert!(n > 0);
            }
            let mut seen = Vec::new();
            while let Some(frame) = codec.decode(wire).unwrap() {
                seen.push(if matches!(frame, Frame::Heartbeat) { 0 } else { frame.payload()[0] });
            }
            seen
        };
        // A reply every 0.6 s for 3 s, each written by its sender: no
        // heartbeat meanwhile.
        let mut got = Vec::new();
        for n in 1..=5u8 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            outbox.arm_direct();
            outbox.try_push_frame(&Frame::Data(vec![n].into()), true).unwrap();
            got.extend(read(&mut wire).await);
        }
        assert_eq!(got, [1, 2, 3, 4, 5], "no heartbeat while senders write");
        assert_eq!(outbox.direct_written(), 5);
        // Then quiet: one heartbeat an interval after the last write.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(read(&mut wire).await.is_empty(), "not yet");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(read(&mut wire).await, [0], "one heartbeat");
        parts.transport.close().await;
        let _ = task.await;
    }
}

#[cfg(test)]
mod outbox_tests {
    //! The outbox's side of a sender's own write: when it may write, what it
    //! queues when the stream takes less, and what the writer then does.

    use std::collections::VecDeque;
    use std::task::{Context, Poll, Waker};

    use bytes::BytesMut;
    use smartsock_framing::Frame;

    use crate::chunk::{Chunk, decode};
    use crate::outbox::{Outbox, VECTORED_MIN};
    use crate::stats::PeerCounters;

    /// A stream that takes at most `room` bytes a write (all it is asked
    /// for by default), and says whether it needs a flush.
    struct Takes {
        room: std::sync::Mutex<usize>,
        flushed: bool,
        wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl super::WriteNow for Takes {
        fn write_now(&self, bytes: &[u8]) -> super::WroteNow {
            let n = bytes.len().min(*self.room.lock().unwrap());
            self.wire.lock().unwrap().extend_from_slice(&bytes[..n]);
            super::WroteNow { bytes: n, flushed: self.flushed || n == 0 }
        }
    }

    /// A waker that counts its wake-ups.
    struct Counts(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counts {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Direct {
        outbox: Outbox,
        wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        counters: std::sync::Arc<PeerCounters>,
        wakes: std::sync::Arc<Counts>,
    }

    impl Direct {
        /// An outbox whose stream takes `room` bytes a write, its writer
        /// parked on it (as it is when idle).
        fn new(room: usize, flushed: bool) -> Self {
            let wire = std::sync::Arc::default();
            let totals = std::sync::Arc::default();
            let id = smartsock_framing::PeerId::from_bytes([7; 16]);
            let counters =
                std::sync::Arc::new(PeerCounters::new(id, "x".into(), crate::Side::Connect, totals));
            let stream = Box::new(Takes { room: room.into(), flushed, wire: std::sync::Arc::clone(&wire) });
            let outbox = Outbox::new(16, 1 << 20, 16, 1 << 24)
                .with_direct(crate::outbox::Direct { stream, counters: counters.clone() });
            let wakes = std::sync::Arc::new(Counts(0.into()));
            let direct = Self { outbox, wire, counters, wakes };
            direct.park_writer();
            // A message came from the peer.
            direct.outbox.arm_direct();
            direct
        }

        fn park_writer(&self) {
            let waker = Waker::from(self.wakes.clone());
            assert!(self.outbox.poll_queued(&mut Context::from_waker(&waker)).is_pending());
        }

        fn push(&self, byte: u8) {
            self.outbox.try_push_frame(&Frame::Data(bytes::Bytes::from(vec![byte])), true).unwrap();
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// What the writer takes now, as it writes it: a leading tail, then
        /// the rest.
        fn take(&self) -> Vec<u8> {
            let mut chunks = VecDeque::new();
            let mut cx = Context::from_waker(Waker::noop());
            let taken = self.outbox.poll_take(&mut cx, &mut Vec::new(), &mut chunks, &mut None);
            assert!(matches!(taken, Poll::Ready(true)));
            let mut wire = Vec::new();
            for chunk in chunks {
                match chunk {
                    Chunk::Encoded { bytes, .. } | Chunk::Tail { bytes, .. } => {
                        wire.extend_from_slice(&bytes)
                    }
                    Chunk::Own(item) => wire.extend_from_slice(&encoded(&item.frame)),
                }
            }
            wire
        }
    }

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut encoded = BytesMut::new();
        frame.encode_into(&mut encoded);
        encoded.to_vec()
    }

    fn data(byte: u8) -> Vec<u8> {
        encoded(&Frame::Data(bytes::Bytes::from(vec![byte])))
    }

    #[test]
    fn a_sender_writes_once_per_message_from_the_peer_while_the_writer_idles() {
        let direct = Direct::new(usize::MAX, true);
        direct.push(1);
        assert_eq!(*direct.wire.lock().unwrap(), data(1), "written by the sender");
        assert_eq!((direct.outbox.len(), direct.wakes()), (0, 0), "nothing queued, the writer left parked");
        assert_eq!(direct.counters.snapshot(0, None).traffic.messages_out, 1);
        assert_eq!(direct.outbox.direct_written(), 1);

        // Not re-armed: a stream of sends goes out in the writer's batches.
        direct.push(2);
        assert_eq!((direct.outbox.len(), direct.wakes()), (1, 1), "queued, and the writer woken");
        direct.push(3);
        assert_eq!(direct.take(), [data(2), data(3)].concat());

        // A message from the peer re-arms it.
        direct.park_writer();
        direct.outbox.arm_direct();
        direct.push(4);
        assert_eq!(*direct.wire.lock().unwrap(), [data(1), data(4)].concat());
        assert_eq!(direct.outbox.direct_written(), 2);
    }

    #[test]
    fn a_sender_writes_payloads_below_the_vectored_size_and_leaves_the_rest_to_the_writer() {
        // The cut-off is on the payload, not on the encoded frame: the
        // largest frame a sender writes is longer than VECTORED_MIN.
        let largest = Frame::Data(vec![1; VECTORED_MIN - 1].into());
        assert!(largest.encoded_len() > VECTORED_MIN);
        let direct = Direct::new(usize::MAX, true);
        direct.outbox.try_push_frame(&largest, true).unwrap();
        // Lengths first, and the bytes without printing 16 KiB on failure.
        let wire = direct.wire.lock().unwrap().clone();
        assert_eq!(wire.len(), largest.encoded_len(), "written by the sender");
        assert!(wire == encoded(&largest));
        assert_eq!((direct.outbox.len(), direct.wakes()), (0, 0), "nothing queued, the writer left parked");
        assert_eq!(direct.outbox.direct_written(), 1);

        let smallest = Frame::Data(vec![2; VECTORED_MIN].into());
        let direct = Direct::new(usize::MAX, true);
        direct.outbox.try_push_frame(&smallest, true).unwrap();
        assert!(direct.wire.lock().unwrap().is_empty(), "not written by the sender");
        assert_eq!((direct.outbox.len(), direct.wakes()), (1, 1), "queued, and the writer woken");
        let taken = direct.take();
        assert_eq!(taken.len(), smallest.encoded_len(), "written by the writer");
        assert!(taken == encoded(&smallest));
        assert_eq!(direct.outbox.direct_written(), 0);
    }

    #[test]
    fn no_sender_writes_while_the_writer_is_busy_or_something_is_queued() {
        let direct = Direct::new(usize::MAX, true);
        assert!(!direct.outbox.take_for_heartbeat(&mut Vec::new(), &mut VecDeque::new()));
        direct.push(1);
        assert_eq!(direct.outbox.len(), 1, "queued: the writer is writing a heartbeat");
        direct.outbox.arm_direct();
        direct.push(2);
        assert_eq!(direct.outbox.len(), 2, "queued behind the first, in order");
        assert!(direct.wire.lock().unwrap().is_empty());
        assert_eq!(direct.take(), [data(1), data(2)].concat());
    }

    #[test]
    fn what_the_stream_does_not_take_is_queued_ahead_of_everything() {
        // The stream takes 3 bytes of the frame: the tail is queued, the
        // writer woken, and the tail goes out before the next frame.
        let direct = Direct::new(3, true);
        direct.push(1);
        assert_eq!(*direct.wire.lock().unwrap(), data(1)[..3]);
        assert_eq!((direct.outbox.len(), direct.wakes()), (1, 1));
        assert_eq!(direct.counters.snapshot(0, None).traffic.messages_out, 0, "counted once written whole");
        direct.push(2);
        assert_eq!(direct.take(), [&data(1)[3..], &data(2)[..]].concat());
        assert_eq!(direct.outbox.direct_written(), 0);

        // A stream that takes nothing: the whole frame is queued.
        let direct = Direct::new(0, true);
        direct.push(1);
        assert_eq!((direct.outbox.len(), direct.wakes()), (1, 1));
        assert_eq!(direct.take(), data(1));
    }

    #[test]
    fn a_heartbeat_takes_a_senders_tail_to_write_it_first() {
        // The writer's heartbeat comes due right after a sender's partial
        // write: the tail is taken with it (and the writer's encoder puts a
        // leading tail before the heartbeat, see writer.rs).
        let direct = Direct::new(3, true);
        direct.push(1);
        let (mut acks, mut chunks) = (Vec::new(), VecDeque::new());
        assert!(direct.outbox.take_for_heartbeat(&mut acks, &mut chunks));
        assert!(matches!(chunks.front(), Some(Chunk::Tail { bytes, .. }) if bytes[..] == data(1)[3..]));
        assert_eq!(direct.outbox.len(), 0);
    }

    #[test]
    fn a_stream_holding_bytes_back_gets_the_writer_to_flush_it() {
        let direct = Direct::new(usize::MAX, false);
        direct.push(1);
        assert_eq!(*direct.wire.lock().unwrap(), data(1));
        assert_eq!(direct.wakes(), 1, "the writer is woken to flush");
        assert!(direct.take().is_empty(), "with nothing to write but the flush");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(direct.outbox.poll_queued(&mut cx).is_pending(), "flushed once, then idle");
    }

    #[test]
    fn a_connection_ending_keeps_a_tail_apart_from_the_frames_to_route_again() {
        let direct = Direct::new(3, true);
        direct.push(1);
        direct.push(2);
        let chunks = direct.outbox.close_chunks(&mut Vec::new());
        assert!(matches!(chunks.front(), Some(Chunk::Tail { messages: 1, .. })));
        let frames = decode(chunks);
        assert_eq!(frames.len(), 1, "the tail is no frame: only the second is routed again");
        assert_eq!(frames[0].frame.payload()[..], [2]);
    }
}
