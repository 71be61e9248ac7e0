//! Peers played by the test over raw TCP.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use smartsock_framing::{Codec, Frame, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::FramedRead;

use crate::wait::within;
use crate::wire::{HELLO_LEN, hello, seq};

/// Socket buffer size asked for on a [`RawListener`]'s sockets, so that a
/// peer that stops reading fills up after a few kilobytes, not megabytes.
pub const SMALL_SOCKET_BUFFER: u32 = 4096;

/// A peer on a raw TCP socket: the test writes and reads the protocol's bytes itself.
#[derive(Debug)]
pub struct RawPeer {
    /// The connection.
    pub stream: TcpStream,
    /// The identity this peer says in its HELLO.
    pub id: [u8; 16],
}

impl RawPeer {
    /// Opens a TCP connection to `addr` and sends nothing.
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs, id: [u8; 16]) -> Self {
        let stream = within("a TCP connect", TcpStream::connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self { stream, id }
    }

    /// Opens a TCP connection to `addr` from the local address `from` (any
    /// 127.x.y.z works on Linux), and sends nothing.
    pub async fn connect_from(addr: SocketAddr, from: [u8; 4], id: [u8; 16]) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind((std::net::Ipv4Addr::from(from), 0).into()).expect("bind the local address");
        let stream = within("a TCP connect", socket.connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self { stream, id }
    }

    /// Connects to a bind end, sends HELLO, and checks the bind end's HELLO
    /// for `server` byte for byte.
    pub async fn handshake(addr: impl tokio::net::ToSocketAddrs, id: [u8; 16], server: PeerId) -> Self {
        let mut peer = Self::connect(addr, id).await;
        peer.write(&hello(id)).await;
        peer.expect_bytes(&hello(*server.as_bytes())).await;
        peer
    }

    /// Writes `bytes` exactly.
    pub async fn write(&mut self, bytes: &[u8]) {
        within("a raw write", self.stream.write_all(bytes)).await.expect("raw write");
    }

    /// Writes one byte per call, flushing (and yielding) after each.
    pub async fn write_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write(std::slice::from_ref(byte)).await;
            self.stream.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
    }

    /// Reads exactly `n` bytes.
    pub async fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        within("raw bytes", self.stream.read_exact(&mut bytes)).await.expect("raw read");
        bytes
    }

    /// Reads exactly `expected.len()` bytes and checks them.
    pub async fn expect_bytes(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len()).await;
        assert_eq!(got, expected, "raw peer received other bytes than expected");
    }

    /// Reads one frame: (type byte, body).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let prefix = self.read_n(4).await;
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        assert!(len >= 1, "empty envelope");
        let envelope = self.read_n(len).await;
        (envelope[0], envelope[1..].to_vec())
    }

    /// Reads frames, skipping heartbeats, until one of another type.
    pub async fn read_non_heartbeat(&mut self) -> (u8, Vec<u8>) {
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
    pub async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        match within("the connection to close", self.stream.read(&mut byte)).await {
            Ok(0) => {}
            Ok(_) => panic!("expected the connection to close, got byte {:#04x}", byte[0]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection to close, got error {e}"),
        }
    }

    /// Asserts that nothing arrives for `quiet` (a negative check: it has to wait).
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(quiet, self.stream.read(&mut byte)).await {
            panic!("expected silence for {quiet:?}, got {read:?} (byte {:#04x})", byte[0]);
        }
    }
}

/// A test-owned listener standing in for a bind end that handshakes and then
/// never reads: its sockets have small receive buffers.
#[derive(Debug)]
pub struct RawListener {
    listener: TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RawListener {
    /// Listens on a free loopback port.
    pub fn new() -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(SMALL_SOCKET_BUFFER).expect("SO_RCVBUF");
        socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let listener = socket.listen(16).expect("listen");
        let addr = listener.local_addr().expect("local address");
        Self { listener, addr }
    }

    /// Accepts one connection and runs the bind end of the handshake by hand:
    /// reads the connect end's HELLO, answers with `identity`'s.
    pub async fn accept(&self, identity: PeerId) -> TcpStream {
        let (mut stream, _) = within("a raw connection", self.listener.accept()).await.expect("accept");
        let mut hello_bytes = [0u8; HELLO_LEN];
        within("the sender's HELLO", stream.read_exact(&mut hello_bytes)).await.expect("read HELLO");
        assert_eq!(&hello_bytes[..6], &[0, 0, 0, 0x12, 0x01, 0x01], "not a v1 HELLO");
        stream.write_all(&hello(*identity.as_bytes())).await.expect("write HELLO");
        stream
    }
}

impl Default for RawListener {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads DATA frames carrying [`payload`](crate::wire::payload)s from a raw
/// peer's stream, skipping heartbeats.
#[derive(Debug)]
pub struct RawReader {
    frames: FramedRead<TcpStream, Codec>,
}

impl RawReader {
    /// Reads frames from `stream`.
    pub fn new(stream: TcpStream) -> Self {
        Self { frames: FramedRead::new(stream, Codec::new()) }
    }

    /// The sequence numbers of the next `count` DATA frames.
    pub async fn read(&mut self, count: usize) -> Vec<u32> {
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
    pub async fn read_to_end(&mut self) -> Vec<u32> {
        self.read_until_end(false).await
    }

    /// Like [`read_to_end`](Self::read_to_end), for a connection cut while a
    /// frame was being written: a partial frame at the end is ignored.
    pub async fn read_to_cut(&mut self) -> Vec<u32> {
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

    /// The stream underneath.
    pub fn get_mut(&mut self) -> &mut TcpStream {
        self.frames.get_mut()
    }
}

/// Splits `bytes` into the DATA frames it holds completely; returns their
/// sequence numbers and the number of bytes left over (a partial frame).
pub fn decode_all(bytes: &[u8]) -> (Vec<u32>, usize) {
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
