//! Helpers shared by the integration tests: loopback receivers, a sender
//! with a peer set, and raw TCP peers that handshake and then stop reading.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use smartsock_framing::Codec;
use smartsock_patterns::{Message, PeerSet, PeerSetConfig, SendError};
use smartsock_transport::{Frame, Incoming, PeerHandle, PeerId, Transport, TransportConfig, TransportParts};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::FramedRead;
use tower::{Service, ServiceExt};

/// The bound on every wait in these tests: generous, so that a loaded
/// machine does not fail them, and reached only when something is wrong.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Bytes of a HELLO on the wire: length prefix, type, version, identity.
pub(crate) const HELLO_LEN: usize = 22;

/// Socket buffer size asked for on both ends of a raw peer's connection, so
/// that its outbox fills after a few kilobytes instead of megabytes.
const SMALL_SOCKET_BUFFER: u32 = 4096;

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A payload that carries its sequence number in its first four bytes,
/// padded with a recognisable byte to `size` (at least 4) bytes.
pub(crate) fn payload(seq: u32, size: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(size.max(4));
    buf.put_u32(seq);
    buf.resize(size.max(4), 0xA5);
    buf.freeze()
}

/// The sequence number [`payload`] put in `bytes`.
pub(crate) fn seq(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().expect("payload shorter than 4 bytes"))
}

/// A transport that binds to a free loopback port, and that port.
pub(crate) async fn receiver() -> (TransportParts, SocketAddr) {
    let parts = Transport::new(TransportConfig::default()).expect("receiver transport");
    let addr = parts.transport.bind("127.0.0.1:0").await.expect("bind").tcp().expect("a TCP address");
    (parts, addr)
}

/// A sender: a transport with `config` and a peer set over it.
pub(crate) fn sender(config: TransportConfig, set_config: PeerSetConfig) -> (Transport, PeerSet) {
    let parts = Transport::new(config).expect("sender transport");
    let peers = PeerSet::new(&parts.transport, parts.orphans, set_config);
    (parts.transport, peers)
}

/// Waits until `transport` has exactly `count` peers, and returns its table.
pub(crate) async fn wait_for_peers(transport: &Transport, count: usize) -> Vec<PeerHandle> {
    let mut table = transport.peers();
    let what = format!("{count} peers");
    let table = within(&what, table.wait_for(|t| t.len() == count)).await.expect("transport gone");
    table.to_vec()
}

/// Connects `sender` to `addr`, waits for that peer to be the `position`-th
/// (0-based) of its table, checks it is `expected`, and returns its handle.
pub(crate) async fn connect_in_order(
    sender: &Transport,
    addr: SocketAddr,
    position: usize,
    expected: PeerId,
) -> PeerHandle {
    sender.connect(&addr.to_string()).expect("connect");
    let table = wait_for_peers(sender, position + 1).await;
    assert_eq!(table[position].id(), expected, "peer {position} is not the one just connected");
    table[position].clone()
}

/// Receives exactly `count` messages from `inbound`.
pub(crate) async fn collect(inbound: &smartsock_transport::Inbound, count: usize) -> Vec<Incoming> {
    let mut got = Vec::with_capacity(count);
    within(&format!("{count} messages"), async {
        while got.len() < count {
            got.push(inbound.recv().await.expect("inbound closed"));
        }
    })
    .await;
    got
}

/// Sequence numbers of `messages`, in arrival order.
pub(crate) fn seqs(messages: &[Incoming]) -> Vec<u32> {
    messages.iter().map(|m| seq(&m.payload)).collect()
}

/// Waits until `handle`'s outbox has room, without taking any.
pub(crate) async fn wait_for_room(handle: &PeerHandle) {
    within("room in an outbox", handle.ready()).await;
    assert!(!handle.is_closed(), "peer gone");
}

/// Closes `transport`, then waits for every receiver to see its peer go, so
/// that everything the sender wrote has been read into their inbound queues.
pub(crate) async fn close_and_settle(transport: &Transport, receivers: &[&Transport]) {
    within("the sender to close", transport.close()).await;
    for receiver in receivers {
        wait_for_peers(receiver, 0).await;
    }
}

/// Asserts that nothing more than what was collected arrived.
pub(crate) fn assert_drained(inbound: &smartsock_transport::Inbound, who: &str) {
    let extra: Vec<u32> = std::iter::from_fn(|| inbound.try_recv().ok()).map(|m| seq(&m.payload)).collect();
    assert!(extra.is_empty(), "{who} received unexpected extra messages {extra:?}");
}

/// A test-owned listener standing in for a peer that handshakes and then
/// never reads: its sockets have small receive buffers.
pub(crate) struct RawListener {
    listener: TcpListener,
    pub(crate) addr: SocketAddr,
}

impl RawListener {
    pub(crate) fn new() -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(SMALL_SOCKET_BUFFER).expect("SO_RCVBUF");
        socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let listener = socket.listen(16).expect("listen");
        let addr = listener.local_addr().expect("local address");
        Self { listener, addr }
    }

    /// Accepts one connection and runs the bind end of the handshake by hand:
    /// reads the connect end's HELLO, answers with `identity`'s.
    pub(crate) async fn accept(&self, identity: PeerId) -> TcpStream {
        let (mut stream, _) = within("a raw connection", self.listener.accept()).await.expect("accept");
        let mut hello = [0u8; HELLO_LEN];
        within("the sender's HELLO", stream.read_exact(&mut hello)).await.expect("read HELLO");
        assert_eq!(&hello[..6], &[0, 0, 0, 0x12, 0x01, 0x01], "not a v1 HELLO");
        stream.write_all(&raw_hello(identity)).await.expect("write HELLO");
        stream
    }
}

/// A HELLO for `identity`, as bytes.
pub(crate) fn raw_hello(identity: PeerId) -> Vec<u8> {
    let mut hello = vec![0, 0, 0, 0x12, 0x01, 0x01];
    hello.extend_from_slice(identity.as_bytes());
    hello
}

/// Makes `sender` dial `addr` from a socket with a small send buffer.
pub(crate) fn connect_small(sender: &Transport, addr: SocketAddr) {
    sender
        .connect_with(&addr.to_string(), move || async move {
            let socket = TcpSocket::new_v4()?;
            socket.set_send_buffer_size(SMALL_SOCKET_BUFFER)?;
            let stream = socket.connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok((stream, addr.to_string()))
        })
        .expect("connect_with");
}

/// Connects `sender` to a raw peer that handshakes and then reads nothing
/// until the test says so; waits for it to be peer number `position`.
pub(crate) async fn connect_raw(sender: &Transport, position: usize) -> (PeerHandle, TcpStream) {
    let listener = RawListener::new();
    let identity = PeerId::random();
    connect_small(sender, listener.addr);
    let stream = listener.accept(identity).await;
    let table = wait_for_peers(sender, position + 1).await;
    assert_eq!(table[position].id(), identity, "peer {position} is not the raw peer");
    (table[position].clone(), stream)
}

/// Reads DATA frames from a raw peer's stream, skipping heartbeats.
pub(crate) struct RawReader {
    frames: FramedRead<TcpStream, Codec>,
}

impl RawReader {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self { frames: FramedRead::new(stream, Codec::new()) }
    }

    /// The sequence numbers of the next `count` DATA frames.
    pub(crate) async fn read(&mut self, count: usize) -> Vec<u32> {
        let mut got = Vec::with_capacity(count);
        within(&format!("{count} frames on a raw peer"), async {
            while got.len() < count {
                if let Some(seq) = self.next_data(false).await {
                    got.push(seq);
                } else {
                    panic!("raw stream ended after {} of {count} frames", got.len());
                }
            }
        })
        .await;
        got
    }

    /// The sequence numbers of every DATA frame until the stream ends.
    pub(crate) async fn read_to_end(&mut self) -> Vec<u32> {
        self.read_until_end(false).await
    }

    /// Like [`read_to_end`](Self::read_to_end), for a connection cut while a
    /// frame was being written: a partial frame at the end is ignored.
    pub(crate) async fn read_to_cut(&mut self) -> Vec<u32> {
        self.read_until_end(true).await
    }

    async fn read_until_end(&mut self, partial_end: bool) -> Vec<u32> {
        let mut got = Vec::new();
        within("the end of a raw stream", async {
            while let Some(seq) = self.next_data(partial_end).await {
                got.push(seq);
            }
        })
        .await;
        got
    }

    /// The next DATA frame's sequence number; `None` at the end of the
    /// stream (or at a partial frame there, if `partial_end`).
    async fn next_data(&mut self, partial_end: bool) -> Option<u32> {
        loop {
            match self.frames.next().await? {
                Ok(Frame::Data(payload)) => return Some(seq(&payload)),
                Ok(Frame::Heartbeat) => {}
                Ok(other) => panic!("unexpected frame on a raw peer: {other:?}"),
                Err(_) if partial_end => return None,
                Err(e) => panic!("undecodable bytes on a raw peer: {e}"),
            }
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut TcpStream {
        self.frames.get_mut()
    }
}

/// Splits `bytes` into the DATA frames it holds completely; returns their
/// sequence numbers and the number of bytes left over (a partial frame).
pub(crate) fn decode_all(bytes: &[u8]) -> (Vec<u32>, usize) {
    use tokio_util::codec::Decoder;
    let mut buf = BytesMut::from(bytes);
    let mut codec = Codec::new();
    let mut got = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).expect("undecodable bytes") {
        match frame {
            Frame::Data(payload) => got.push(seq(&payload)),
            Frame::Heartbeat => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    (got, buf.len())
}

/// Holds back a [`GatedStream`]'s writes until opened, and records what the
/// writer offered meanwhile.
#[derive(Default)]
pub(crate) struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
    offered: Mutex<Vec<u8>>,
}

impl Gate {
    /// Lets writes through from now on.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().expect("gate lock").take() {
            waker.wake();
        }
    }

    /// Whether the writer is blocked on the closed gate.
    pub(crate) fn stalled(&self) -> bool {
        !self.open.load(Ordering::SeqCst) && !self.offered.lock().expect("gate lock").is_empty()
    }

    /// The sequence numbers of the DATA frames the writer tried to write
    /// while the gate was closed: frames it has taken out of the outbox.
    pub(crate) fn offered(&self) -> Vec<u32> {
        let (frames, partial) = decode_all(&self.offered.lock().expect("gate lock"));
        assert_eq!(partial, 0, "a write offered a partial frame");
        frames
    }
}

/// A TCP stream that writes its first `allow` bytes (the HELLO) and then
/// accepts nothing until its [`Gate`] opens: towards a peer that stopped
/// reading, without depending on the size of kernel socket buffers.
pub(crate) struct GatedStream {
    inner: TcpStream,
    allow: usize,
    gate: Arc<Gate>,
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = if self.allow > 0 {
            buf.len().min(self.allow)
        } else if self.gate.open.load(Ordering::SeqCst) {
            buf.len()
        } else {
            *self.gate.offered.lock().expect("gate lock") = buf.to_vec();
            *self.gate.waker.lock().expect("gate lock") = Some(cx.waker().clone());
            if !self.gate.open.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
            buf.len()
        };
        let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..n]))?;
        self.allow = self.allow.saturating_sub(written);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A peer behind a [`GatedStream`]: the sender's handle for it, the test's
/// end of the TCP connection (handshake done), and the gate.
pub(crate) struct GatedPeer {
    pub(crate) handle: PeerHandle,
    pub(crate) stream: TcpStream,
    pub(crate) gate: Arc<Gate>,
}

impl GatedPeer {
    /// Whether its writer is blocked on the gate and its outbox is full: it
    /// stays so until the gate opens.
    pub(crate) fn is_stuck(&self) -> bool {
        self.gate.stalled() && self.handle.room() == 0
    }
}

/// Sends un-addressed messages numbered from `next` (of `size` bytes) through
/// `service` until every peer of `stuck` is stuck, keeping the `live` peers'
/// outboxes from filling on the way. Every send must be ready and accepted at
/// once.
///
/// Readiness is only asked for while some outbox has room: a readiness that
/// waited would reserve slots as they free up, and a reserved slot looks like
/// a full one from outside.
pub(crate) async fn fill_until_stuck<S>(
    service: &mut S,
    stuck: &[&GatedPeer],
    live: &[PeerHandle],
    next: &mut u32,
    size: usize,
) where
    S: Service<Message, Response = (), Error = SendError>,
{
    within("the gated peers to fill up", async {
        loop {
            for handle in live {
                wait_for_room(handle).await;
            }
            if stuck.iter().all(|p| p.is_stuck()) {
                return;
            }
            if live.is_empty() && stuck.iter().all(|p| p.handle.room() == 0) {
                // A writer is about to take a batch, or has taken one and not
                // yet tried to write it.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let ready = service.ready().now_or_never().expect("not ready although an outbox has room");
            ready
                .expect("poll_ready failed")
                .call(Message::new(payload(*next, size)))
                .now_or_never()
                .expect("a send waited although an outbox had room")
                .expect("send failed");
            *next += 1;
        }
    })
    .await;
}

/// Connects `sender` to a raw peer through a [`GatedStream`], closed; waits
/// for it to be peer number `position`. Later reconnection tries fail.
pub(crate) async fn connect_gated(sender: &Transport, position: usize) -> GatedPeer {
    let listener = RawListener::new();
    let addr = listener.addr;
    let identity = PeerId::random();
    let gate = Arc::new(Gate::default());
    let connector_gate = gate.clone();
    sender
        .connect_with(&addr.to_string(), move || {
            let gate = connector_gate.clone();
            async move {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok((GatedStream { inner: stream, allow: HELLO_LEN, gate }, addr.to_string()))
            }
        })
        .expect("connect_with");
    let stream = listener.accept(identity).await;
    // Once this one is accepted, nothing listens there any more.
    drop(listener);
    let table = wait_for_peers(sender, position + 1).await;
    assert_eq!(table[position].id(), identity, "peer {position} is not the gated peer");
    GatedPeer { handle: table[position].clone(), stream, gate }
}
