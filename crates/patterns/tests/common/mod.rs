//! Helpers shared by the integration tests: loopback receivers, a sender
//! with a peer set, and raw TCP peers that handshake and then stop reading.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use smartsock_patterns::{Message, PeerSet, PeerSetConfig, SendError};
use smartsock_testkit::raw::SMALL_SOCKET_BUFFER;
use smartsock_transport::{Incoming, PeerHandle, PeerId, Transport, TransportConfig, TransportParts};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tower::{Service, ServiceExt};

pub(crate) use smartsock_testkit::raw::{RawListener, RawReader, decode_all};
pub(crate) use smartsock_testkit::wire::{HELLO_LEN, payload, seq};
pub(crate) use smartsock_testkit::{WAIT, within};

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

/// A HELLO for `identity`, as bytes.
pub(crate) fn raw_hello(identity: PeerId) -> Vec<u8> {
    smartsock_testkit::wire::hello(*identity.as_bytes())
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
