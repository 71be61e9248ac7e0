//! Helpers shared by the transport's integration tests: bounded waits, event
//! matching, the protocol's exact bytes written by hand, a raw TCP peer and an
//! in-memory peer that speaks through the framing codec.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use smartsock_framing::{Codec, Frame, PeerId};
use smartsock_transport::{Event, PeerTable, Transport, TransportConfig, TransportParts};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// The bound on every wait: generous, so that only a real hang fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A config whose identity is known to the test.
pub(crate) fn config() -> TransportConfig {
    TransportConfig::default()
}

/// A transport made from `config`.
pub(crate) fn transport(config: TransportConfig) -> TransportParts {
    Transport::new(config).expect("valid config")
}

/// Waits until the peer table satisfies `check`, and returns it.
pub(crate) async fn wait_peers(
    transport: &Transport,
    what: &str,
    check: impl FnMut(&PeerTable) -> bool,
) -> PeerTable {
    let mut peers: smartsock_transport::PeerWatch = transport.peers();
    within(what, peers.wait_for(check)).await.expect("the peer table lives as long as the transport").clone()
}

/// Waits until exactly `n` peers are connected.
pub(crate) async fn wait_peer_count(transport: &Transport, n: usize) -> PeerTable {
    wait_peers(transport, &format!("{n} peers"), |table| table.len() == n).await
}

/// Receives events until `pick` returns `Some`, skipping the others.
pub(crate) async fn next_event<T>(
    events: &mut smartsock_transport::Events,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(smartsock_transport::EventsError::Lagged(n)) => {
                    panic!("lost {n} events waiting for {what}")
                }
                Err(_) => panic!("event stream closed waiting for {what}"),
            }
        }
    })
    .await
}

/// Receives the next event, whatever it is.
pub(crate) async fn any_event(events: &mut smartsock_transport::Events) -> Event {
    next_event(events, "any event", |event| Some(event.clone())).await
}

/// Asserts that no event is waiting right now.
pub(crate) fn no_event_queued(events: &mut smartsock_transport::Events) {
    match events.try_recv() {
        Err(smartsock_transport::EventsError::Empty) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

// The protocol's bytes, written out by hand (not through the codec) so that the
// tests check the wire format itself.

/// HELLO of `version`: `00 00 00 12 01 <version> <identity>`.
pub(crate) fn hello_v(version: u8, id: [u8; 16]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x12, 0x01, version];
    bytes.extend_from_slice(&id);
    bytes
}

/// HELLO of version 1.
pub(crate) fn hello(id: [u8; 16]) -> Vec<u8> {
    hello_v(0x01, id)
}

/// HEARTBEAT: `00 00 00 01 02`.
pub(crate) const HEARTBEAT: [u8; 5] = [0x00, 0x00, 0x00, 0x01, 0x02];

/// DATA: length (big-endian), `03`, payload.
pub(crate) fn data(payload: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(payload.len() + 1).unwrap().to_be_bytes().to_vec();
    bytes.push(0x03);
    bytes.extend_from_slice(payload);
    bytes
}

/// DATA_REQ: length, `04`, msg_id, payload.
pub(crate) fn data_req(id: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(payload.len() + 17).unwrap().to_be_bytes().to_vec();
    bytes.push(0x04);
    bytes.extend_from_slice(&id);
    bytes.extend_from_slice(payload);
    bytes
}

/// ACK: `00 00 00 11 05`, msg_id.
pub(crate) fn ack(id: [u8; 16]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x11, 0x05];
    bytes.extend_from_slice(&id);
    bytes
}

/// A frame header announcing an envelope of `len` bytes of type `kind`.
pub(crate) fn header(len: u32, kind: u8) -> Vec<u8> {
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.push(kind);
    bytes
}

/// A payload whose bytes tell their position, so that a shifted byte shows.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A peer on a raw TCP socket: the test writes and reads the protocol's bytes itself.
pub(crate) struct RawPeer {
    pub(crate) stream: TcpStream,
    pub(crate) id: [u8; 16],
}

impl RawPeer {
    /// Opens a TCP connection to `addr` and sends nothing.
    pub(crate) async fn connect(addr: impl tokio::net::ToSocketAddrs, id: [u8; 16]) -> Self {
        let stream = within("a TCP connect", TcpStream::connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Self { stream, id }
    }

    /// Opens a TCP connection to `addr` from the local address `from` (any
    /// 127.x.y.z works on Linux), and sends nothing.
    pub(crate) async fn connect_from(addr: std::net::SocketAddr, from: [u8; 4], id: [u8; 16]) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
        let stream = within("a TCP connect", socket.connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Self { stream, id }
    }

    /// Connects to a bind end, sends HELLO, and checks the bind end's HELLO
    /// for `server` byte for byte.
    pub(crate) async fn handshake(
        addr: impl tokio::net::ToSocketAddrs,
        id: [u8; 16],
        server: PeerId,
    ) -> Self {
        let mut peer = Self::connect(addr, id).await;
        peer.write(&hello(id)).await;
        peer.expect_bytes(&hello(*server.as_bytes())).await;
        peer
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        within("a raw write", self.stream.write_all(bytes)).await.expect("raw write");
    }

    /// Writes one byte per call, flushing (and yielding) after each.
    pub(crate) async fn write_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write(std::slice::from_ref(byte)).await;
            self.stream.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    /// Reads exactly `n` bytes.
    pub(crate) async fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        within("raw bytes", self.stream.read_exact(&mut bytes)).await.expect("raw read");
        bytes
    }

    /// Reads exactly `expected.len()` bytes and checks them.
    pub(crate) async fn expect_bytes(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len()).await;
        assert_eq!(got, expected, "raw peer received other bytes than expected");
    }

    /// Reads one frame: (type byte, body).
    pub(crate) async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let prefix = self.read_n(4).await;
        let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
        assert!(len >= 1, "empty envelope");
        let envelope = self.read_n(len).await;
        (envelope[0], envelope[1..].to_vec())
    }

    /// Reads frames, skipping heartbeats, until one of another type.
    pub(crate) async fn read_non_heartbeat(&mut self) -> (u8, Vec<u8>) {
        for _ in 0..100 {
            let frame = self.read_frame().await;
            if frame.0 != 0x02 {
                return frame;
            }
        }
        panic!("only heartbeats");
    }

    /// Expects the connection to end with no further byte: EOF, or a reset
    /// when the other end closed with our bytes unread.
    pub(crate) async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        match within("the connection to close", self.stream.read(&mut byte)).await {
            Ok(0) => {}
            Ok(_) => panic!("expected the connection to close, got byte {:#04x}", byte[0]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection to close, got error {e}"),
        }
    }

    /// Asserts that nothing arrives for `quiet` (a negative check: it has to wait).
    pub(crate) async fn expect_silence(&mut self, quiet: Duration) {
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(quiet, self.stream.read(&mut byte)).await {
            panic!("expected silence for {quiet:?}, got {read:?} (byte {:#04x})", byte[0]);
        }
    }
}

/// The test's end of an in-memory connection, speaking through the framing codec.
pub(crate) struct MemPeer {
    pub(crate) reader: FramedRead<ReadHalf<DuplexStream>, Codec>,
    pub(crate) writer: FramedWrite<WriteHalf<DuplexStream>, Codec>,
}

impl MemPeer {
    pub(crate) fn new(stream: DuplexStream) -> Self {
        let (read, write) = tokio::io::split(stream);
        Self { reader: FramedRead::new(read, Codec::new()), writer: FramedWrite::new(write, Codec::new()) }
    }

    pub(crate) async fn send(&mut self, frame: Frame) {
        within("a frame to be written", self.writer.send(frame)).await.expect("write to the duplex");
    }

    /// The next frame, or `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        within("a frame", self.reader.next()).await.map(|frame| frame.expect("a well-formed frame"))
    }

    pub(crate) async fn expect(&mut self, expected: Frame) {
        assert_eq!(self.next().await, Some(expected));
    }
}
