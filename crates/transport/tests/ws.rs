//! WebSocket on the bind end (same port as raw TCP, told apart by the first
//! byte), ws:// and wss:// connect ends, and the bind end's answers to a
//! hostile WebSocket client written out byte by byte.
#![cfg(feature = "ws")]

mod common;
#[cfg(feature = "tls")]
#[path = "common/pki.rs"]
mod pki;

use std::time::Duration;

use common::*;
use smartsock_framing::Frame;
use smartsock_transport::{Event, Outgoing, RefusedReason, TransportConfig, TransportParts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The RFC 6455 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket client written by hand, to send what a library would not.
struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    /// Upgrades, asking for a subprotocol and an extension, and checks that
    /// neither is agreed to.
    async fn upgrade(port: u16) -> Self {
        let mut stream = within("connect", TcpStream::connect(("127.0.0.1", port))).await.unwrap();
        let request = format!(
            "GET /feed HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(within("the upgrade response", stream.read(&mut byte)).await.unwrap(), 1, "closed");
            response.push(byte[0]);
            assert!(response.len() < 4096, "response too long");
        }
        let response = String::from_utf8(response).unwrap().to_ascii_lowercase();
        assert!(response.starts_with("http/1.1 101"), "{response}");
        assert!(
            response.contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase())),
            "{response}"
        );
        assert!(!response.contains("sec-websocket-protocol"), "{response}");
        assert!(!response.contains("sec-websocket-extensions"), "{response}");
        Self { stream }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let mask = [0x5a, 0x01, 0xc3, 0x77];
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        within("a frame written", self.stream.write_all(&frame)).await.unwrap();
    }

    async fn binary(&mut self, payload: &[u8]) {
        self.send_frame(0x2, payload, true).await;
    }

    /// The next frame from the server: (opcode, payload). Server frames are never masked.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        within("a frame", self.stream.read_exact(&mut head)).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "a masked frame from the server");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.stream.read_exact(&mut n).await.unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                self.stream.read_exact(&mut n).await.unwrap();
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        within("a payload", self.stream.read_exact(&mut payload)).await.unwrap();
        (head[0] & 0x0f, payload)
    }

    /// Reads binary frames until `n` bytes of the byte stream have arrived.
    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let (opcode, payload) = self.frame().await;
            assert_eq!(opcode, 0x2, "expected binary, got opcode {opcode}");
            got.extend_from_slice(&payload);
        }
        assert_eq!(got.len(), n);
        got
    }

    /// Expects a close frame with `code`.
    async fn expect_close(&mut self, code: u16) {
        let (opcode, payload) = self.frame().await;
        assert_eq!(opcode, 0x8, "expected a close frame");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
    }
}

async fn refusal(events: &mut smartsock_transport::Events, what: &str) -> RefusedReason {
    next_event(events, what, |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

async fn exchange(from: &TransportParts, to: &TransportParts, payload: &'static str) {
    let table =
        wait_peers(&from.transport, "the peer", |t| t.iter().any(|p| p.id() == to.transport.identity()))
            .await;
    let peer = table.iter().find(|p| p.id() == to.transport.identity()).unwrap().clone();
    peer.try_send(Outgoing::to_any_peer(Frame::Data(payload.into()))).unwrap();
    let got = within("a message", to.inbound.recv()).await.unwrap();
    assert_eq!((got.peer, &got.payload[..]), (from.transport.identity(), payload.as_bytes()));
}

#[tokio::test]
async fn raw_tcp_and_websocket_peers_share_one_port() {
    let server = transport(config());
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let server_id = *server.transport.identity().as_bytes();

    let tcp = transport(config());
    tcp.transport.connect(&format!("127.0.0.1:{port}")).unwrap();
    let ws = transport(config());
    ws.transport.connect(&format!("ws://127.0.0.1:{port}/feed")).unwrap();

    // And one written by hand: its HELLO split over two messages, which
    // mean nothing to the byte stream, and a ping on the way.
    let mut raw = RawWs::upgrade(port).await;
    let id = [0x42; 16];
    let greeting = [hello(id), data(b"from raw")].concat();
    raw.send_frame(0x9, b"are you there", true).await;
    let (opcode, payload) = raw.frame().await;
    assert_eq!((opcode, &payload[..]), (0xA, &b"are you there"[..]), "the ping is answered with its payload");
    raw.binary(&greeting[..7]).await;
    raw.binary(&greeting[7..]).await;
    assert_eq!(raw.bytes(22).await, hello(server_id));
    let got = within("raw's message", server.inbound.recv()).await.unwrap();
    assert_eq!((got.peer.as_bytes(), &got.payload[..]), (&id, &b"from raw"[..]));

    exchange(&tcp, &server, "from tcp").await;
    exchange(&ws, &server, "from ws").await;
    assert_eq!(server.transport.peer_table().len(), 3);

    exchange(&server, &tcp, "to tcp").await;
    exchange(&server, &ws, "to ws").await;
    let to_raw = server.transport.peer_table().iter().find(|p| p.id().as_bytes() == &id).unwrap().clone();
    to_raw.try_send(Outgoing::to_any_peer(Frame::Data("to raw".into()))).unwrap();
    assert_eq!(raw.bytes(data(b"to raw").len()).await, data(b"to raw"));
    // Pinged again once up, with an empty payload.
    raw.send_frame(0x9, b"", true).await;
    assert_eq!(raw.frame().await, (0xA, Vec::new()));

    for t in [tcp, ws, server] {
        t.transport.close().await;
    }
}

#[tokio::test]
async fn a_text_message_is_closed_with_1003() {
    let server = transport(config());
    let mut events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let mut raw = RawWs::upgrade(port).await;
    raw.send_frame(0x1, b"hello", true).await;
    raw.expect_close(1003).await;
    match refusal(&mut events, "text").await {
        RefusedReason::Io(why) => assert!(why.contains("a text message"), "{why}"),
        other => panic!("{other:?}"),
    }
    server.transport.close().await;
}

#[tokio::test]
async fn an_unmasked_client_frame_is_closed_with_1002() {
    let server = transport(config());
    let mut events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let mut raw = RawWs::upgrade(port).await;
    raw.send_frame(0x2, &hello([1; 16]), false).await;
    raw.expect_close(1002).await;
    match refusal(&mut events, "unmasked").await {
        RefusedReason::Io(why) => assert!(why.contains("unmasked"), "{why}"),
        other => panic!("{other:?}"),
    }
    server.transport.close().await;
}

#[tokio::test]
async fn a_message_over_the_frame_limit_is_refused_from_its_header() {
    let mut config = config();
    config.max_frame_length = 1024;
    let server = transport(config);
    let mut events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let server_id = *server.transport.identity().as_bytes();
    let mut raw = RawWs::upgrade(port).await;
    raw.binary(&hello([3; 16])).await;
    assert_eq!(raw.bytes(22).await, hello(server_id));
    // A header announcing a terabyte, and no payload: refused at once.
    raw.stream.write_all(&[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4]).await.unwrap();
    raw.expect_close(1009).await;
    let reason = next_event(&mut events, "a disconnect", |e| match e {
        Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.to_string().contains("over the limit of 1028"), "{reason}");
    server.transport.close().await;
}

#[tokio::test]
async fn the_upgrade_request_is_bounded_in_size_and_time() {
    let mut config = config();
    config.handshake_timeout = Duration::from_millis(300);
    let server = transport(config);
    let mut events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();

    let mut big = RawPeer::connect(("127.0.0.1", port), [0; 16]).await;
    let mut request = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
    request.resize(70 * 1024, b'a');
    let _ = big.stream.write_all(&request).await;
    assert_eq!(
        refusal(&mut events, "a large request").await,
        RefusedReason::WebSocket("the upgrade request is too large".into())
    );

    let mut slow = RawPeer::connect(("127.0.0.1", port), [0; 16]).await;
    slow.write(b"GET / HTTP/1.1\r\n").await;
    assert_eq!(
        refusal(&mut events, "a slow request").await,
        RefusedReason::WebSocket("no upgrade within the handshake timeout".into())
    );
    slow.expect_closed().await;
    server.transport.close().await;
}

#[tokio::test]
async fn a_first_byte_that_is_neither_protocol_nor_upgrade_is_refused() {
    let server = transport(config());
    let mut events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let mut raw = RawPeer::connect(("127.0.0.1", port), [0; 16]).await;
    raw.write(b"POST / HTTP/1.1\r\n\r\n").await;
    assert_eq!(refusal(&mut events, "a POST").await, RefusedReason::UnknownFirstByte(b'P'));
    raw.expect_closed().await;
    server.transport.close().await;
}

#[tokio::test]
async fn websocket_can_be_turned_off_on_tcp_binds_but_ws_binds_keep_it() {
    let mut config = config();
    config.websocket = false;
    let server = transport(config.clone());
    let plain = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let ws = server.transport.bind("ws://127.0.0.1:0").await.unwrap().port().unwrap();
    let mut events = server.transport.events();

    let client = transport(TransportConfig::default());
    client.transport.connect(&format!("ws://127.0.0.1:{ws}/")).unwrap();
    exchange(&client, &server, "over ws").await;

    let mut raw = RawPeer::connect(("127.0.0.1", plain), [0; 16]).await;
    raw.write(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(matches!(refusal(&mut events, "no websocket").await, RefusedReason::Malformed(_)));
    client.transport.close().await;
    server.transport.close().await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn wss_and_raw_tls_share_a_tls_port() {
    let pki = pki::Pki::new("CA");
    let mut server_config = config();
    server_config.tls_server = Some(pki.server(None));
    let server = transport(server_config);
    let endpoint = server.transport.bind("wss://127.0.0.1:0").await.unwrap();
    let port = endpoint.port().unwrap();

    let client_config = || {
        let mut config = config();
        config.tls_client = Some(pki.client(None));
        config
    };
    let wss = transport(client_config());
    wss.transport.connect(&format!("wss://localhost:{port}/socket")).unwrap();
    let tls = transport(client_config());
    tls.transport.connect(&endpoint.to_string()).unwrap();

    exchange(&wss, &server, "up over wss").await;
    exchange(&tls, &server, "up over tls").await;
    exchange(&server, &wss, "down over wss").await;
    exchange(&server, &tls, "down over tls").await;
    let info = wss.transport.peer_info(server.transport.identity()).unwrap();
    assert_eq!(info.certificate.unwrap().subject, "CN=server");
    for t in [wss, tls, server] {
        t.transport.close().await;
    }
}

#[tokio::test]
async fn large_messages_cross_websocket_in_pieces() {
    let server = transport(config());
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let client = transport(config());
    client.transport.connect(&format!("ws://127.0.0.1:{port}")).unwrap();
    let table = wait_peer_count(&client.transport, 1).await;
    let big = pattern(3 * 1024 * 1024 + 17, 9);
    table[0].try_send(Outgoing::to_any_peer(Frame::Data(big.clone().into()))).unwrap();
    let got = within("a large message", server.inbound.recv()).await.unwrap();
    assert_eq!(got.payload.len(), big.len());
    assert!(got.payload[..] == big[..]);
    client.transport.close().await;
    server.transport.close().await;
}

/// Garbage from many connections, seeded so a failure can be replayed: raw
/// bytes after each possible first byte, and random WebSocket frames after a
/// good upgrade. Every connection ends (refused or disconnected) within the
/// bounds, nothing panics, and a good peer is served throughout.
#[tokio::test]
async fn garbage_after_the_first_byte_and_inside_websocket_ends_only_its_connection() {
    use rand::{Rng, SeedableRng};

    let mut config = config();
    config.handshake_timeout = Duration::from_millis(500);
    config.max_frame_length = 4096;
    let server = transport(config);
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let good = transport(TransportConfig::default());
    good.transport.connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
    exchange(&good, &server, "before").await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0014);
    for round in 0..40 {
        let len = rng.random_range(1..2048);
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            // The first byte the detection must handle, then anything.
            garbage[0] = [0x00, b'G', 0x16, 0xff][round / 2 % 4];
            let mut raw = RawPeer::connect(("127.0.0.1", port), [0; 16]).await;
            let _ = raw.stream.write_all(&garbage).await;
            let mut sink = Vec::new();
            let read = tokio::time::timeout(WAIT, raw.stream.read_to_end(&mut sink)).await;
            assert!(read.is_ok(), "round {round}: the connection stayed open");
            assert!(sink.len() <= 1024, "round {round}: {} bytes back", sink.len());
        } else {
            // Random frames inside a WebSocket, masked or not.
            let mut raw = RawWs::upgrade(port).await;
            for _ in 0..rng.random_range(1..5) {
                let opcode = rng.random_range(0..16);
                let masked = rng.random_bool(0.8);
                let payload: Vec<u8> = (0..rng.random_range(0..300)).map(|_| rng.random()).collect();
                raw.send_frame(opcode, &payload, masked).await;
            }
            let _ = raw.stream.write_all(&garbage).await;
            let mut sink = Vec::new();
            let read = tokio::time::timeout(WAIT, raw.stream.read_to_end(&mut sink)).await;
            assert!(read.is_ok(), "round {round}: the WebSocket stayed open");
        }
    }
    exchange(&good, &server, "after").await;
    exchange(&server, &good, "and back").await;
    assert_eq!(server.transport.peer_table().len(), 1);
    good.transport.close().await;
    server.transport.close().await;
}
