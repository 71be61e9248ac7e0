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
