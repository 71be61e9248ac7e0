//! `Socket::stats`: exact counts after scripted exchanges over loopback TCP.
//!
//! Counters are updated by the connections' tasks after each read and each
//! write, a moment after the bytes move; so each test waits until the
//! figures it expects show (bounded), then asserts them all exactly.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, BytesMut};
use common::{WAIT, next_event, recv_from, within};
use smartsock::{Delivery, Event, MsgId, PeerId, RefusedReason, SendMode, Socket, SocketStats, WhenFull};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Takes `socket`'s stats until `done` holds for them, and returns them.
async fn stats_when(socket: &Socket, what: &str, done: impl Fn(&SocketStats) -> bool) -> SocketStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = socket.stats();
        if done(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {stats:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_scripted_exchange_is_counted_per_peer_and_in_total() -> Result<(), smartsock::Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let (alice, bob) = (Socket::new()?, Socket::new()?);
    alice.connect(&addr)?;
    bob.connect(&addr)?;
    within("two peers", server.wait_for_peers(2)).await;

    for _ in 0..3 {
        alice.send(vec![b'a'; 10]).await?;
    }
    for _ in 0..2 {
        bob.send(vec![b'b'; 7]).await?;
    }
    for _ in 0..5 {
        recv_from(&server).await;
    }
    for _ in 0..4 {
        server.send_to(alice.identity(), vec![b's'; 5]).await?;
    }
    for _ in 0..4 {
        within("a reply", alice.recv()).await;
    }

    let stats = stats_when(&server, "4 messages out", |s| s.totals.messages_out == 4).await;
    let a = stats.peer(alice.identity()).expect("alice is connected");
    let b = stats.peer(bob.identity()).expect("bob is connected");
    assert_eq!(
        (a.traffic.messages_in, a.traffic.bytes_in, a.traffic.messages_out, a.traffic.bytes_out),
        (3, 30, 4, 20)
    );
    assert_eq!(
        (b.traffic.messages_in, b.traffic.bytes_in, b.traffic.messages_out, b.traffic.bytes_out),
        (2, 14, 0, 0)
    );
    assert_eq!((stats.totals.messages_in, stats.totals.bytes_in), (5, 44));
    assert_eq!(stats.totals.bytes_out, 20);
    assert_eq!((a.traffic.dropped, a.resent, a.outbox_depth), (0, 0, 0));
    assert_eq!(a.side, smartsock::Side::Bind);
    assert!(a.connected_at <= a.last_heard && a.last_heard <= SystemTime::now());
    assert_eq!((stats.connections, stats.peers.len(), stats.departed.len()), (2, 2, 0));
    assert_eq!((stats.buffered, stats.received_queued, stats.in_flight), (0, 0, 0));
    assert_eq!(stats.refusals.total(), 0);
    assert!(stats.delivery.is_none());

    // The other end counts the same exchange from its side.
    let mine = stats_when(&alice, "3 messages out", |s| s.totals.messages_out == 3).await;
    let to_server = mine.peer(server.identity()).expect("connected to the server");
    assert_eq!(
        (to_server.traffic.messages_out, to_server.traffic.bytes_out, to_server.traffic.messages_in),
        (3, 30, 4)
    );
    assert_eq!(to_server.side, smartsock::Side::Connect);

    // A peer that leaves keeps its figures: in `departed`, and in the totals.
    let mut events = server.events();
    alice.close().await;
    next_event(
        &mut events,
        "alice leaving",
        |e| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == alice.identity()),
    )
    .await;
    let stats = server.stats();
    assert_eq!(stats.peers.len(), 1);
    let gone = &stats.departed[0];
    assert_eq!((gone.id, gone.traffic.messages_in, gone.traffic.messages_out), (alice.identity(), 3, 4));
    assert!(gone.disconnected_at.is_some());
    assert_eq!((stats.totals.messages_in, stats.totals.messages_out, stats.connections), (5, 4, 2));
    Ok(())
}

/// A raw aiomsg peer on a TCP stream: it writes and reads frames itself.
struct RawPeer {
    id: PeerId,
    stream: TcpStream,
    buf: BytesMut,
}

fn hello(id: PeerId, version: u8) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x12, 0x01, version];
    bytes.extend_from_slice(id.as_bytes());
    bytes
}

impl RawPeer {
    /// Connects to a bind end and sends a HELLO of `version` (not waiting for an answer).
    async fn dial(addr: &str, id: PeerId, version: u8) -> Self {
        let stream = within("a TCP connect", TcpStream::connect(addr)).await.expect("connect");
        let mut peer = Self { id, stream, buf: BytesMut::new() };
        peer.write(&hello(id, version)).await;
        peer
    }

    async fn write(&mut self, bytes: &[u8]) {
        within("a raw write", self.stream.write_all(bytes)).await.expect("raw write");
    }

    /// The next frame other than a HEARTBEAT: its type byte and body.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        within("a frame", async {
            loop {
                while self.buf.len() >= 4 {
                    let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                    if self.buf.len() < 4 + len {
                        break;
                    }
                    let frame = self.buf.split_to(4 + len);
                    if frame[4] != 0x02 {
                        return (frame[4], frame[5..].to_vec());
                    }
                }
                let read = self.stream.read_buf(&mut self.buf).await.expect("raw read");
                assert!(read > 0, "the socket closed the connection");
            }
        })
        .await
    }
}

#[tokio::test]
async fn drops_for_a_stalled_subscriber_are_counted_exactly() -> Result<(), smartsock::Error> {
    const SENT: usize = 2_000;
    let publisher = Socket::builder()
        .send_mode(SendMode::Publish)
        .when_subscriber_full(WhenFull::Drop)
        .peer_queue(16)
        .build()?;
    let addr = publisher.bind("127.0.0.1:0").await?.to_string();
    let reader = Socket::builder().receive_queue(SENT).build()?;
    reader.connect(&addr)?;
    // Completes the handshake, then never reads again.
    let mut stalled = RawPeer::dial(&addr, PeerId::random(), 1).await;
    assert_eq!(stalled.frame().await.0, 0x01, "the publisher's HELLO");
    within("two subscribers", publisher.wait_for_peers(2)).await;

    // Big enough that the stalled peer's socket buffers fill early on.
    let payload = vec![7u8; 16 * 1024];
    for _ in 0..SENT {
        publisher.send(payload.clone()).await?;
    }
    for _ in 0..SENT {
        within("a published message", reader.recv()).await;
    }

    let stats = stats_when(&publisher, "every copy to the reader written", |s| {
        s.peer(reader.identity()).is_some_and(|p| p.traffic.messages_out == SENT as u64)
    })
    .await;
    let slow = stats.peer(stalled.id).expect("the stalled subscriber is connected");
    let fast = stats.peer(reader.identity()).expect("the reader is connected");
    let drops = publisher.slow_subscriber_drops();
    assert!(drops > 0, "the stalled subscriber should have lost copies");
    assert_eq!(slow.traffic.dropped, drops);
    assert_eq!(stats.slow_subscriber_drops, drops);
    assert_eq!(stats.totals.dropped, drops);
    assert_eq!(fast.traffic.dropped, 0);
    assert_eq!(fast.traffic.bytes_out, (SENT * payload.len()) as u64);
    // What was not dropped is written, or waits in its outbox, or is in the
    // write stuck on the full socket: never more than was sent.
    assert!(slow.traffic.messages_out + slow.outbox_depth as u64 + drops <= SENT as u64);
    assert!(slow.outbox_depth <= 16);
    Ok(())
}

#[tokio::test]
async fn a_swallowed_data_req_is_counted_as_one_resend_for_its_peer() -> Result<(), Box<dyn std::error::Error>>
{
    // The raw peer binds: the socket connects to it.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(Duration::from_millis(200))
        .build()?;
    sender.connect(&addr.to_string())?;
    let (stream, _) = within("the socket's connection", listener.accept()).await?;
    let mut raw = RawPeer { id: PeerId::random(), stream, buf: BytesMut::new() };
    assert_eq!(raw.frame().await.0, 0x01, "the socket's HELLO");
    raw.write(&hello(raw.id, 1)).await;
    within("the raw peer", sender.wait_for_peers(1)).await;

    sender.send("once").await?;
    let (kind, first) = raw.frame().await;
    assert_eq!(kind, 0x04, "a DATA_REQ");
    // Swallowed: no ACK. The resend comes with the same id.
    let (kind, again) = raw.frame().await;
    assert_eq!((kind, &again), (0x04, &first));
    let id = MsgId::from_bytes(first[..16].try_into()?);
    let mut ack = BytesMut::new();
    ack.put_slice(&[0x00, 0x00, 0x00, 0x11, 0x05]);
    ack.put_slice(id.as_bytes());
    raw.write(&ack).await;
    within("the ACK", sender.settled()).await;

    let stats = stats_when(&sender, "two sends written", |s| s.totals.messages_out == 2).await;
    let peer = stats.peer(raw.id).expect("the raw peer is connected");
    let delivery = stats.delivery.expect("at-least-once");
    assert_eq!((delivery.sent, delivery.resent, delivery.acked, delivery.undelivered), (1, 1, 1, 0));
    assert_eq!(peer.resent, 1);
    assert_eq!((peer.traffic.messages_out, peer.traffic.bytes_out), (2, 8));
    assert_eq!((peer.traffic.messages_in, stats.in_flight), (0, 0));
    Ok(())
}

#[tokio::test]
async fn handshake_refusals_are_counted_by_reason() -> Result<(), smartsock::Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let mut events = server.events();
    let is_refusal = |e: &Event| matches!(e, Event::HandshakeRefused { .. });

    // A HELLO of version 2.
    let _v2 = RawPeer::dial(&addr, PeerId::random(), 2).await;
    let event = next_event(&mut events, "a version refusal", is_refusal).await;
    assert!(matches!(event, Event::HandshakeRefused { reason: RefusedReason::Version(2), .. }));

    // DATA before any HELLO.
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let mut garbage = RawPeer { id: PeerId::random(), stream, buf: BytesMut::new() };
    garbage.write(&[0x00, 0x00, 0x00, 0x02, 0x03, b'x']).await;
    let event = next_event(&mut events, "a malformed refusal", is_refusal).await;
    assert!(matches!(event, Event::HandshakeRefused { reason: RefusedReason::Malformed(_), .. }));

    // The same identity twice: the second is refused.
    let twin = PeerId::random();
    let mut first = RawPeer::dial(&addr, twin, 1).await;
    assert_eq!(first.frame().await.0, 0x01);
    let _second = RawPeer::dial(&addr, twin, 1).await;
    let event = next_event(&mut events, "a duplicate refusal", is_refusal).await;
    assert!(matches!(event, Event::HandshakeRefused { reason: RefusedReason::DuplicateIdentity(_), .. }));

    let stats = server.stats();
    let r = stats.refusals;
    assert_eq!((r.version, r.malformed, r.duplicate_identity), (1, 1, 1));
    assert_eq!(r.total(), 3);
    assert_eq!((stats.connections, stats.peers.len()), (1, 1));
    let labelled: Vec<_> = r.iter().filter(|(_, n)| *n > 0).map(|(reason, _)| reason).collect();
    assert_eq!(labelled, ["version", "duplicate_identity", "malformed"]);
    Ok(())
}

/// Publishes 16 KiB messages to a peer that never reads, with a queue of
/// `mark` payload bytes (and room for far more messages), until its outbox
/// holds `expected` frames; then checks that 50 more sends add none (each is
/// dropped for it, and goes to the subscriber that reads).
async fn a_stalled_peer_queue_holds(mark: usize, expected: usize) -> Result<(), smartsock::Error> {
    const SIZE: usize = 16 * 1024;
    let publisher = Socket::builder()
        .send_mode(SendMode::Publish)
        .when_subscriber_full(WhenFull::Drop)
        .peer_queue(1000)
        .peer_queue_bytes(mark)
        // The stalled peer sends no HEARTBEATs: a slow run must not lose it.
        .heartbeat(Duration::from_secs(60), Duration::from_secs(300))
        .linger(Duration::from_millis(100))
        .build()?;
    let addr = publisher.bind("127.0.0.1:0").await?.to_string();
    // A subscriber that keeps up: with every subscriber full a send waits.
    let reader = Socket::new()?;
    reader.connect(&addr)?;
    within("the reader", publisher.wait_for_peers(1)).await;
    let drain = reader.clone();
    tokio::spawn(async move { while drain.recv().await.is_some() {} });
    // Completes the handshake, then never reads again.
    let mut stalled = RawPeer::dial(&addr, PeerId::random(), 1).await;
    assert_eq!(stalled.frame().await.0, 0x01, "the publisher's HELLO");
    within("the stalled subscriber", publisher.wait_for_peers(2)).await;
    let depth = |publisher: &Socket| publisher.stats().peer(stalled.id).expect("connected").outbox_depth;

    // 16 MiB first, far past what the kernel's buffers take for a peer that
    // never reads (its receive buffer does not grow while nothing is read;
    // the send buffer grows to `tcp_wmem`'s 4 MiB at most): from then on its
    // writer is blocked for good, and its outbox only fills.
    let payload = bytes::Bytes::from(vec![7u8; SIZE]);
    let mut sent = 0;
    while sent < 1024 || depth(&publisher) < expected {
        assert!(sent < 20_000, "the outbox never reached {expected} frames");
        publisher.send(payload.clone()).await?;
        sent += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(depth(&publisher), expected);
    let drops = publisher.slow_subscriber_drops();
    for _ in 0..50 {
        publisher.send(payload.clone()).await?;
    }
    assert_eq!(depth(&publisher), expected, "a send taken past the byte mark");
    assert_eq!(publisher.slow_subscriber_drops(), drops + 50);
    publisher.close().await;
    reader.close().await;
    Ok(())
}

#[tokio::test]
async fn a_peer_queue_is_full_at_its_byte_mark_exactly() -> Result<(), smartsock::Error> {
    // A message is taken while fewer bytes than the mark are queued: at
    // 0, 16 and 32 KiB, not at 48 KiB...
    a_stalled_peer_queue_holds(48 * 1024, 3).await?;
    // ...unless the mark is one byte more.
    a_stalled_peer_queue_holds(48 * 1024 + 1, 4).await
}
