//! The HELLO handshake over loopback TCP: both sides, pipelined frames,
//! refusals (version, duplicate and own identity, malformed) and the
//! handshake timeout.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use common::*;
use smartsock_transport::{
    DisconnectReason, Event, Frame, Outgoing, PeerId, RefusedReason, Side, TransportConfig,
};

#[tokio::test]
async fn both_sides_see_each_other_with_the_right_id_and_side() {
    let server = transport(config());
    let client = transport(config());
    let mut server_events = server.transport.events();
    let mut client_events = client.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    client.transport.connect(&addr.to_string()).unwrap();

    let client_id = client.transport.identity();
    let server_id = server.transport.identity();
    let (peer, side, seen_addr) = next_event(&mut server_events, "server PeerConnected", |e| match e {
        Event::PeerConnected { peer, side, addr } => Some((*peer, *side, addr.clone())),
        _ => None,
    })
    .await;
    assert_eq!((peer, side), (client_id, Side::Bind));
    let client_local = seen_addr.clone();
    assert!(seen_addr.starts_with("127.0.0.1:"), "{seen_addr}");

    let (peer, side, seen_addr) = next_event(&mut client_events, "client PeerConnected", |e| match e {
        Event::PeerConnected { peer, side, addr } => Some((*peer, *side, addr.clone())),
        _ => None,
    })
    .await;
    assert_eq!((peer, side, seen_addr), (server_id, Side::Connect, addr.to_string()));

    // The peer tables agree with the events.
    let on_server = wait_peer_count(&server.transport, 1).await;
    assert_eq!((on_server[0].id(), on_server[0].side()), (client_id, Side::Bind));
    assert_eq!(on_server[0].addr(), client_local);
    let on_client = wait_peer_count(&client.transport, 1).await;
    assert_eq!((on_client[0].id(), on_client[0].side()), (server_id, Side::Connect));

    // Traffic both ways, tagged with the sender.
    on_client[0].try_send(Outgoing::to_any_peer(Frame::Data("up".into()))).unwrap();
    on_server[0].try_send(Outgoing::to_this_peer(Frame::Data("down".into()))).unwrap();
    let up = within("message at the server", server.inbound.recv()).await.unwrap();
    assert_eq!((up.peer, &up.payload[..], up.request.is_none()), (client_id, &b"up"[..], true));
    let down = within("message at the client", client.inbound.recv()).await.unwrap();
    assert_eq!((down.peer, &down.payload[..]), (server_id, &b"down"[..]));

    client.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn hello_pipelined_with_data_in_one_write_delivers_the_data() {
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let id = [0xA1; 16];
    let mut raw = RawPeer::connect(addr, id).await;

    let mut segment = hello(id);
    segment.extend(data(b"first"));
    segment.extend(data_req([0x77; 16], b"second"));
    segment.extend(data(b""));
    raw.write(&segment).await;
    raw.expect_bytes(&hello(*server.transport.identity().as_bytes())).await;

    let first = within("pipelined DATA", server.inbound.recv()).await.unwrap();
    assert_eq!((first.peer, &first.payload[..]), (PeerId::from_bytes(id), &b"first"[..]));
    let second = within("pipelined DATA_REQ", server.inbound.recv()).await.unwrap();
    assert_eq!(&second.payload[..], b"second");
    let request = second.request.expect("a DATA_REQ carries its ack handle");
    assert_eq!(request.id().as_bytes(), &[0x77; 16]);
    assert!(!request.already_sent());
    let empty = within("pipelined empty DATA", server.inbound.recv()).await.unwrap();
    assert!(empty.payload.is_empty());
    assert!(server.inbound.is_empty());

    server.transport.close().await;
}

#[tokio::test]
async fn connect_end_decodes_data_pipelined_with_the_bind_ends_hello() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = transport(config());
    client.transport.connect(&addr.to_string()).unwrap();
    let (stream, _) = within("accept", listener.accept()).await.unwrap();
    let mut raw = RawPeer { stream, id: [0xB2; 16] };

    // The connect end speaks first, at once.
    raw.expect_bytes(&hello(*client.transport.identity().as_bytes())).await;
    let mut segment = hello(raw.id);
    segment.extend(data(b"with the hello"));
    raw.write(&segment).await;

    let message = within("pipelined DATA at the connect end", client.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes(raw.id), &b"with the hello"[..]));
    client.transport.close().await;
}

#[tokio::test]
async fn version_2_hello_is_refused() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let mut raw = RawPeer::connect(addr, [0x02; 16]).await;
    raw.write(&hello_v(0x02, raw.id)).await;
    // The bind end answered the first byte with its own HELLO, then closes.
    // Refused before the bind end answers: no HELLO, only the close.
    raw.expect_closed().await;

    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::Version(2));
    assert!(server.transport.peer_table().is_empty());
    no_event_queued(&mut events);

    server.transport.close().await;
}

#[tokio::test]
async fn connect_end_refuses_a_version_2_hello_and_tries_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = config();
    config.reconnect = smartsock_transport::ReconnectStrategy::fixed(Duration::from_millis(20));
    let client = transport(config);
    let mut events = client.transport.events();
    client.transport.connect(&addr.to_string()).unwrap();

    let (stream, _) = within("accept", listener.accept()).await.unwrap();
    let mut raw = RawPeer { stream, id: [0x22; 16] };
    raw.expect_bytes(&hello(*client.transport.identity().as_bytes())).await;
    raw.write(&hello_v(2, raw.id)).await;
    raw.expect_closed().await;
    assert_eq!(
        next_event(&mut events, "HandshakeRefused", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await,
        RefusedReason::Version(2)
    );
    let attempt = next_event(&mut events, "Reconnecting", |e| match e {
        Event::Reconnecting { attempt, .. } => Some(*attempt),
        _ => None,
    })
    .await;
    assert_eq!(attempt, 1);
    // And it does try again.
    let (stream, _) = within("second accept", listener.accept()).await.unwrap();
    let mut raw = RawPeer { stream, id: [0x22; 16] };
    raw.expect_bytes(&hello(*client.transport.identity().as_bytes())).await;
    client.transport.close().await;
}

#[tokio::test]
async fn duplicate_identity_is_refused_and_the_first_connection_keeps_working() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let id = [0xD0; 16];

    let mut first = RawPeer::handshake(addr, id, server_id).await;
    let table = wait_peer_count(&server.transport, 1).await;
    let first_handle = table[0].clone();

    // Refused before the bind end answers: the second sees no HELLO, only the close.
    let mut second = RawPeer::connect(addr, id).await;
    second.write(&hello(id)).await;
    second.expect_closed().await;
    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::DuplicateIdentity(PeerId::from_bytes(id)));

    // The first connection still works, both ways, and is still the one in the table.
    first.write(&data(b"still here")).await;
    let message = within("DATA over the first connection", server.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (PeerId::from_bytes(id), &b"still here"[..]));
    let table = server.transport.peer_table();
    assert_eq!(table.len(), 1);
    assert!(!first_handle.is_closed());
    first_handle.try_send(Outgoing::to_this_peer(Frame::Data("to the first".into()))).unwrap();
    first.expect_bytes(&data(b"to the first")).await;
    // No disconnect event was raised for the first.
    assert!(
        !std::iter::from_fn(|| events.try_recv().ok()).any(|e| matches!(e, Event::PeerDisconnected { .. })),
        "the first connection was reported down"
    );

    server.transport.close().await;
}

#[tokio::test]
async fn own_identity_is_refused() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let server_id = server.transport.identity();
    let mut raw = RawPeer::connect(addr, *server_id.as_bytes()).await;
    raw.write(&hello(*server_id.as_bytes())).await;
    raw.expect_closed().await;
    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::OwnIdentity);
    server.transport.close().await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_hello_is_refused() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let _server_id = server.transport.identity();

    // DATA instead of HELLO.
    let mut raw = RawPeer::connect(addr, [1; 16]).await;
    raw.write(&data(b"no hello")).await;
    // A refused peer is never answered: no HELLO, only the close.
    raw.expect_closed().await;
    assert!(matches!(
        next_event(&mut events, "refusal", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await,
        RefusedReason::Malformed(_)
    ));

    // A HELLO whose length prefix claims more than a HELLO, refused from the prefix alone.
    let mut raw = RawPeer::connect(addr, [2; 16]).await;
    raw.write(&header(0x13, 0x01)).await;
    // A refused peer is never answered: no HELLO, only the close.
    raw.expect_closed().await;
    assert!(matches!(
        next_event(&mut events, "refusal", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await,
        RefusedReason::Malformed(_)
    ));

    // Closed in the middle of the HELLO.
    let mut raw = RawPeer::connect(addr, [3; 16]).await;
    raw.write(&hello([3; 16])[..10]).await;
    // A refused peer is never answered: no HELLO, only the close.
    raw.stream.shutdown().await.unwrap();
    assert!(matches!(
        next_event(&mut events, "refusal", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await,
        RefusedReason::Io(_)
    ));
    assert!(server.transport.peer_table().is_empty());
    server.transport.close().await;
}

fn short_handshake() -> TransportConfig {
    let mut config = config();
    config.handshake_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_the_handshake_timeout() {
    let server = transport(short_handshake());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();

    let started = Instant::now();
    let mut raw = RawPeer::connect(addr, [9; 16]).await;
    // Nothing sent, so the bind end never answers: the first thing seen is the close.
    raw.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "closed after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
    let reason = next_event(&mut events, "HandshakeRefused", |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, RefusedReason::Timeout);

    // A peer that sends the first byte of its HELLO and stalls is timed out too.
    let started = Instant::now();
    let mut raw = RawPeer::connect(addr, [9; 16]).await;
    raw.write(&hello([9; 16])[..1]).await;
    // A refused peer is never answered: no HELLO, only the close.
    raw.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        next_event(&mut events, "HandshakeRefused", |e| match e {
            Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await,
        RefusedReason::Timeout
    );
    server.transport.close().await;
}

#[tokio::test]
async fn a_connect_end_gives_up_on_a_silent_bind_end_after_the_handshake_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = transport(short_handshake());
    let mut events = client.transport.events();
    client.transport.connect(&addr.to_string()).unwrap();
    let (stream, _) = within("accept", listener.accept()).await.unwrap();
    let started = Instant::now();
    let mut raw = RawPeer { stream, id: [0; 16] };
    raw.expect_bytes(&hello(*client.transport.identity().as_bytes())).await;
    raw.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        any_event(&mut events).await,
        Event::HandshakeRefused { addr: addr.to_string(), reason: RefusedReason::Timeout }
    );
    assert!(matches!(any_event(&mut events).await, Event::Reconnecting { attempt: 1, .. }));
    client.transport.close().await;
}

#[tokio::test]
async fn a_peer_that_closes_cleanly_is_reported_as_closed() {
    let server = transport(config());
    let mut events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let raw = RawPeer::handshake(addr, [0x44; 16], server.transport.identity()).await;
    wait_peer_count(&server.transport, 1).await;
    drop(raw);
    let (peer, reason) = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => Some((*peer, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!((peer, reason), (PeerId::from_bytes([0x44; 16]), DisconnectReason::PeerClosed));
    wait_peer_count(&server.transport, 0).await;
    server.transport.close().await;
}
