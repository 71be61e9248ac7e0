//! Hostile peers against the transport: each attack ends that one
//! connection (or costs it its turn), and the socket's other peers go on.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{DisconnectReason, Event, MAX_CONTROL_FRAMES_PER_SECOND, PeerId, RefusedReason};

#[tokio::test]
async fn a_flood_of_control_frames_closes_that_connection_only() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut flooder = RawPeer::handshake(addr, [0xF1; 16], server_id).await;
    let mut honest = RawPeer::handshake(addr, [0xF2; 16], server_id).await;
    wait_peer_count(&server.transport, 2).await;

    // Exactly the limit within a second is tolerated...
    let at_limit: Vec<u8> = HEARTBEAT.repeat(MAX_CONTROL_FRAMES_PER_SECOND);
    flooder.write(&at_limit).await;
    flooder.write(&data(b"still here")).await;
    let message = within("DATA after the heartbeats", server.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes([0xF1; 16]), &b"still here"[..]));
    // ...one more (a repeated HELLO counts too) is a flood.
    flooder.write(&hello([0xF1; 16])).await;
    flooder.expect_closed().await;
    let (peer, reason) = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => Some((*peer, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(peer, PeerId::from_bytes([0xF1; 16]));
    assert!(matches!(&reason, DisconnectReason::Protocol(why) if why.contains("HEARTBEAT")), "{reason:?}");

    // The honest peer never noticed.
    honest.write(&data(b"fine")).await;
    let message = within("DATA from the honest peer", server.inbound.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"fine");
    assert_eq!(wait_peer_count(&server.transport, 1).await[0].id(), PeerId::from_bytes([0xF2; 16]));
    server.transport.close().await;
}

#[tokio::test]
async fn a_connect_end_refused_for_its_identity_sees_no_peer_and_backs_off() {
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    // A squatter holds the identity first.
    let squatted = [0x51; 16];
    let _squatter = RawPeer::handshake(addr, squatted, server_id).await;
    wait_peer_count(&server.transport, 1).await;

    let mut config = config();
    config.identity = PeerId::from_bytes(squatted);
    let client = transport(config);
    let mut events = client.transport.events();
    client.transport.connect(&addr.to_string()).unwrap();
    // Refused before the bind end answers: the client never has a peer, and
    // its tries come at growing intervals (100, 200, 400 ms, ...), not every
    // 100 ms.
    let mut delays = Vec::new();
    while delays.len() < 4 {
        let delay = next_event(&mut events, "Reconnecting", |e| match e {
            Event::Reconnecting { delay, .. } => Some(*delay),
            Event::PeerConnected { .. } => panic!("a refused connect end saw a peer"),
            _ => None,
        })
        .await;
        delays.push(delay);
    }
    assert_eq!(
        delays,
        [100, 200, 400, 800].map(Duration::from_millis),
        "a refused connect end must back off exponentially"
    );
    assert!(client.transport.peer_table().is_empty());
    client.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn connections_that_never_finish_their_handshake_cannot_keep_a_peer_out() {
    // Far more stalled connections than handshake places, from one address
    // at the per-address limit and from many others: a legitimate peer is
    // still answered at once.
    let mut settings = config();
    settings.max_handshakes = 16;
    settings.handshake_timeout = Duration::from_secs(60);
    let server = transport(settings);
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut stalled = Vec::new();
    for i in 0..100u8 {
        let mut raw = RawPeer::connect_from(addr, [127, 0, 1, i], [i; 16]).await;
        raw.write(&hello([i; 16])[..3]).await;
        stalled.push(raw);
    }
    let client = transport(config());
    let started = std::time::Instant::now();
    client.transport.connect(&addr.to_string()).unwrap();
    wait_peer_count(&client.transport, 1).await;
    assert!(started.elapsed() < Duration::from_secs(2), "kept out for {:?}", started.elapsed());
    assert!(server.transport.peer_table().iter().any(|p| p.id() == client.transport.identity()));
    client.transport.close().await;
    server.transport.close().await;
    drop(stalled);
}

#[tokio::test]
async fn one_address_cannot_hold_every_peer_slot() {
    let mut settings = config();
    settings.max_peers = 8;
    settings.max_peers_per_address = 4;
    let server = transport(settings);
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut held = Vec::new();
    for i in 0..4u8 {
        let mut raw = RawPeer::connect_from(addr, [127, 0, 2, 1], [i; 16]).await;
        raw.write(&hello([i; 16])).await;
        raw.expect_bytes(&hello(*server_id.as_bytes())).await;
        held.push(raw);
    }
    wait_peer_count(&server.transport, 4).await;
    // The fifth from that address is refused, unanswered...
    let mut fifth = RawPeer::connect_from(addr, [127, 0, 2, 1], [9; 16]).await;
    fifth.write(&hello([9; 16])).await;
    fifth.expect_closed().await;
    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::TooManyFromAddress);
    // ...while another address still gets a slot.
    let _other = RawPeer::handshake(addr, [0x77; 16], server_id).await;
    wait_peer_count(&server.transport, 5).await;
    server.transport.close().await;
}

/// Log lines captured by a test's subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refusal_storm_logs_a_bounded_number_of_warnings() {
    // Found: one WARN per refusal, 130,000 lines in 15 s under an identity
    // storm. Now each refusal is an event and a count, and the log says so
    // at most once a second (the held-back count on the next line).
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread runtime: the transport's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let held = [0x5A; 16];
    let _holder = RawPeer::handshake(addr, held, server_id).await;
    wait_peer_count(&server.transport, 1).await;

    const STORM: usize = 300;
    let started = std::time::Instant::now();
    for _ in 0..STORM {
        let mut raw = RawPeer::connect(addr, held).await;
        raw.write(&hello(held)).await;
        raw.expect_closed().await;
        let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason, RefusedReason::DuplicateIdentity(PeerId::from_bytes(held)));
    }
    let elapsed = started.elapsed();
    assert_eq!(server.transport.stats().refusals.duplicate_identity, STORM as u64);
    server.transport.close().await;

    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> =
        logged.lines().filter(|line| line.contains("WARN") && line.contains("handshake refused")).collect();
    // The first refusal is logged at once; after it, at most one a second.
    assert!(!warnings.is_empty(), "{logged}");
    let most = 1 + elapsed.as_secs() as usize;
    assert!(warnings.len() <= most, "{} warnings in {elapsed:?} (at most {most}):\n{logged}", warnings.len());
    assert!(warnings[0].contains("identity"), "{logged}");
    // Any later line says how many were held back, and together they
    // account for every refusal but the first.
    let held_back: u64 = warnings[1..]
        .iter()
        .map(|line| {
            let count = line.split("suppressed=").nth(1).expect("a held-back count");
            count.split_whitespace().next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert!(held_back + warnings.len() as u64 <= STORM as u64, "{logged}");
}
