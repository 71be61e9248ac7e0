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
}
