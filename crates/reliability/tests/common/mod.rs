//! Helpers shared by the reliability tests: the sender stack (Transport,
//! PeerSet, RoundRobin, AtLeastOnce), peers played by the test over an
//! in-memory stream (through the framing codec) or over raw TCP (writing the
//! protocol's exact bytes), and bounded waits.

// Each test binary uses a different subset of these helpers (and of the
// testkit's, re-exported here).
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use smartsock_framing::{Codec, Frame, MsgId, PeerId};
use smartsock_patterns::{Message, PeerSet, PeerSetConfig, RoundRobin, RoundRobinLayer, SendError};
use smartsock_reliability::{
    AtLeastOnce, AtLeastOnceConfig, AtLeastOnceHandle, AtLeastOnceLayer, UndeliveredReceiver, Went,
};
use smartsock_transport::{Outgoing, Side, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::Framed;
use tower::{Layer, Service, ServiceExt};

pub(crate) use smartsock_testkit::WAIT;
use smartsock_testkit::wire::HEARTBEAT;
/// Awaits `future`, failing the test if it takes longer than `limit`.
pub(crate) use smartsock_testkit::within_for as within;

/// A transport config whose heartbeats stay out of the way: paused-time
/// tests jump minutes ahead, and the test peers send no heartbeats.
pub(crate) fn quiet_transport() -> TransportConfig {
    let mut config = TransportConfig::default();
    config.heartbeat_interval = Duration::from_secs(3600);
    config.heartbeat_timeout = Duration::from_secs(7200);
    config
}

/// An at-least-once config with the given resend timeout and attempts, and
/// everything else at its default.
pub(crate) fn reliable(resend_timeout: Duration, max_attempts: u32) -> AtLeastOnceConfig {
    let mut config = AtLeastOnceConfig::default();
    config.resend_timeout = resend_timeout;
    config.max_attempts = max_attempts;
    config
}

/// The sender's service stack.
pub(crate) type Stack = AtLeastOnce<RoundRobin<PeerSet>>;

/// An at-least-once sender: Transport, PeerSet, RoundRobin, AtLeastOnce.
pub(crate) struct Sender {
    pub(crate) transport: Transport,
    pub(crate) service: Stack,
    pub(crate) handle: AtLeastOnceHandle,
    pub(crate) undelivered: UndeliveredReceiver,
    /// Subscribed before anything happened: the give-up reports.
    pub(crate) events: smartsock_transport::Events,
    /// Kept open: a transport whose inbound receiver is gone drops its peers
    /// when they send data.
    _inbound: smartsock_transport::Inbound,
}

impl Sender {
    /// A sender with `config` over a transport with quiet heartbeats.
    pub(crate) fn new(config: AtLeastOnceConfig) -> Self {
        let parts = Transport::new(quiet_transport()).expect("valid transport config");
        let transport = parts.transport;
        let events = transport.events();
        let peers = PeerSet::new(&transport, parts.orphans, PeerSetConfig::default());
        let (layer, undelivered) = AtLeastOnceLayer::new(config, parts.acks).expect("valid config");
        let layer = layer.with_events(&transport);
        let handle = layer.handle();
        let service = layer.layer(RoundRobinLayer::new().layer(peers));
        Self { transport, service, handle, undelivered, events, _inbound: parts.inbound }
    }

    /// Waits for readiness, then sends `message`.
    pub(crate) async fn send_message(&mut self, message: Message) -> Result<(), SendError> {
        let service =
            within("the sender to be ready", WAIT, ServiceExt::<Message>::ready(&mut self.service)).await?;
        within("the send to complete", WAIT, service.call(message)).await
    }

    /// Sends `payload` to whichever peer round-robin picks.
    pub(crate) async fn send(&mut self, payload: &'static str) -> Result<(), SendError> {
        self.send_message(Message::new(payload)).await
    }

    /// Whether the service becomes ready within `limit`.
    pub(crate) async fn ready_within(&mut self, limit: Duration) -> bool {
        match timeout(limit, ServiceExt::<Message>::ready(&mut self.service)).await {
            Ok(ready) => {
                ready.expect("readiness never fails");
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until exactly `n` peers are connected.
    pub(crate) async fn wait_for_peers(&self, n: usize) {
        let mut peers = self.transport.peers();
        within(&format!("{n} peers"), WAIT, peers.wait_for(|table| table.len() == n))
            .await
            .expect("the peer table lives as long as the transport");
    }

    /// Waits until no message is waiting for its ACK.
    pub(crate) async fn settled(&self) {
        within("the sender to settle", WAIT, self.handle.settled()).await;
    }
}

/// Tracks and queues `payload` for `to` in one step
/// ([`try_send_tracked`](smartsock_reliability::AtLeastOnceHandle::try_send_tracked)),
/// queueing the DATA_REQ into `to`'s outbox by hand; returns its id.
pub(crate) fn send_in_one_turn(sender: &Sender, to: PeerId, payload: impl Into<Bytes>) -> MsgId {
    let mut sent = None;
    let table = sender.transport.peer_table();
    let peer = table.iter().find(|p| p.id() == to).expect("connected");
    let went = sender.handle.try_send_tracked(Message::new(payload), |request| {
        let Frame::DataReq { id, .. } = request.frame else { panic!("not a DATA_REQ: {:?}", request.frame) };
        sent = Some(id);
        peer.try_send(Outgoing::to_this_peer(request.frame.clone())).expect("room in the outbox");
        Went::Out(Some(to))
    });
    assert_eq!(went, Ok(()));
    sent.expect("the send was called")
}

/// A peer played by the test over an in-memory stream, through the codec.
pub(crate) struct MemPeer {
    pub(crate) id: PeerId,
    framed: Framed<DuplexStream, Codec>,
}

impl MemPeer {
    /// Opens an in-memory connection that `transport` serves as its connect
    /// end, and answers its HELLO.
    pub(crate) async fn attach(transport: &Transport, label: &str) -> Self {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        transport.serve(ours, Side::Connect, label).expect("transport open");
        let mut framed = Framed::new(theirs, Codec::new());
        // The connect end speaks first.
        let hello = within("the sender's HELLO", WAIT, framed.next())
            .await
            .expect("a frame, not EOF")
            .expect("a well-formed frame");
        assert_eq!(hello, Frame::hello(transport.identity()));
        let id = PeerId::random();
        within("our HELLO to be written", WAIT, framed.send(Frame::hello(id))).await.expect("HELLO written");
        Self { id, framed }
    }

    /// The next frame other than a HEARTBEAT, or `None` if none arrives
    /// within `limit`. EOF or a malformed frame fails the test.
    pub(crate) async fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            match timeout_at(deadline, self.framed.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the sender closed the connection"),
                Ok(Some(Err(e))) => panic!("malformed frame from the sender: {e}"),
                Ok(Some(Ok(Frame::Heartbeat))) => {}
                Ok(Some(Ok(frame))) => return Some(frame),
            }
        }
    }

    /// The next DATA_REQ's id and payload; any other frame fails the test.
    pub(crate) async fn expect_data_req(&mut self, limit: Duration) -> (MsgId, Bytes) {
        match self.next_frame(limit).await {
            Some(Frame::DataReq { id, payload }) => (id, payload),
            Some(other) => panic!("expected a DATA_REQ, got {other:?}"),
            None => panic!("no DATA_REQ within {limit:?}"),
        }
    }

    /// Acknowledges `id`.
    pub(crate) async fn ack(&mut self, id: MsgId) {
        within("an ACK to be written", WAIT, self.framed.send(Frame::Ack(id))).await.expect("ACK written");
    }
}

// The protocol's bytes, written out by hand (not through the codec) so that
// the tests check the wire format itself.

/// HELLO: `00 00 00 12 01 01`, identity.
pub(crate) fn hello_bytes(id: PeerId) -> Vec<u8> {
    smartsock_testkit::wire::hello(*id.as_bytes())
}

/// DATA: length (big-endian), `03`, payload.
pub(crate) use smartsock_testkit::wire::data as data_bytes;

/// DATA_REQ: length (big-endian), `04`, msg_id, payload.
pub(crate) fn data_req_bytes(id: MsgId, payload: &[u8]) -> Vec<u8> {
    smartsock_testkit::wire::data_req(*id.as_bytes(), payload)
}

/// ACK: `00 00 00 11 05`, msg_id.
pub(crate) fn ack_bytes(id: MsgId) -> Vec<u8> {
    smartsock_testkit::wire::ack(*id.as_bytes())
}

/// A peer on a raw TCP socket: the test writes and reads the protocol's
/// bytes itself.
pub(crate) struct TcpPeer {
    pub(crate) id: PeerId,
    stream: TcpStream,
    /// Bytes read and not yet returned: reading is cancel-safe, so a read cut
    /// short by a timeout loses nothing.
    buf: BytesMut,
}

impl TcpPeer {
    /// Connects to a bind end and completes the handshake: sends HELLO, then
    /// checks the bind end's HELLO for `server` byte for byte.
    pub(crate) async fn connect(addr: SocketAddr, server: PeerId) -> Self {
        let stream = within("a TCP connect", WAIT, TcpStream::connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        let mut peer = Self { id: PeerId::random(), stream, buf: BytesMut::new() };
        peer.write(&hello_bytes(peer.id)).await;
        let hello = peer.read_frame(WAIT).await.expect("the bind end's HELLO");
        assert_eq!(hello, hello_bytes(server));
        peer
    }

    /// Writes `bytes` exactly.
    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        within("a raw write", WAIT, self.stream.write_all(bytes)).await.expect("raw write");
    }

    /// The next frame's exact bytes, length prefix included, skipping
    /// HEARTBEATs; `None` if no whole frame arrives within `limit`. EOF fails
    /// the test.
    pub(crate) async fn read_frame(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            while self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() < 4 + len {
                    break;
                }
                let frame = self.buf.split_to(4 + len).to_vec();
                if frame != HEARTBEAT {
                    return Some(frame);
                }
            }
            match timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("the transport closed the connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("raw read failed: {e}"),
            }
        }
    }

    /// The next frame, which must be a DATA_REQ: its id and payload.
    pub(crate) async fn expect_data_req(&mut self, limit: Duration) -> (MsgId, Bytes) {
        let frame = self.read_frame(limit).await.unwrap_or_else(|| panic!("no DATA_REQ within {limit:?}"));
        assert!(frame.len() >= 21 && frame[4] == 0x04, "expected a DATA_REQ, got {frame:02x?}");
        let mut body = Bytes::from(frame).slice(5..);
        let id = MsgId::from_bytes(body[..16].try_into().unwrap());
        body.advance(16);
        (id, body)
    }
}
