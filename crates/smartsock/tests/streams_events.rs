//! `messages()` and `identity_messages()` streams, the `events()` stream
//! (peers connecting and disconnecting, with their identities) and `peers()`.

mod common;

use common::{connected, disconnected, next_event, numbered, within};
use futures::StreamExt;
use smartsock::{DisconnectReason, Error, Event, Side, Socket};

#[tokio::test]
async fn messages_stream_yields_in_order_and_ends_after_close() -> Result<(), Error> {
    let (server, client) = common::pair().await;
    for i in 0..30 {
        client.send(numbered(i)).await?;
    }
    let mut messages = Box::pin(server.messages());
    let first: Vec<_> = within("twenty messages", messages.by_ref().take(20).collect()).await;
    assert_eq!(first, (0..20).map(numbered).collect::<Vec<_>>());

    // Close the sender, wait until the server has read everything, close the
    // server: the stream yields the rest and then ends.
    let mut events = Box::pin(server.events());
    let client_id = client.identity();
    client.close().await;
    disconnected(&mut events, client_id).await;
    server.close().await;
    let rest: Vec<_> = within("the end of the stream", messages.collect()).await;
    assert_eq!(rest, (20..30).map(numbered).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn identity_messages_stream_names_each_sender() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let clients: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for client in &clients {
        client.connect(&addr)?;
    }
    within("three clients", server.wait_for_peers(3)).await;
    for i in 0..10 {
        for (k, client) in clients.iter().enumerate() {
            client.send(format!("{k}:{i}")).await?;
        }
    }
    let received: Vec<_> = within("thirty messages", server.identity_messages().take(30).collect()).await;
    for (k, client) in clients.iter().enumerate() {
        let from_k: Vec<_> =
            received.iter().filter(|(from, _)| *from == client.identity()).map(|(_, m)| m.clone()).collect();
        let expected: Vec<_> = (0..10).map(|i| format!("{k}:{i}")).collect();
        assert_eq!(from_k, expected, "client {k}");
    }
    // A second stream on the same socket carries on where the first stopped.
    clients[0].send("more").await?;
    let (from, message) =
        within("one more", Box::pin(server.identity_messages()).next()).await.expect("open");
    assert_eq!((from, message.as_ref()), (clients[0].identity(), &b"more"[..]));
    Ok(())
}

#[tokio::test]
async fn events_and_peers_track_connections_by_identity() -> Result<(), Error> {
    let server = Socket::new()?;
    let mut server_events = Box::pin(server.events());
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    assert!(server.peers().is_empty());
    assert_eq!(server.local_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(), vec![addr.clone()]);

    let alice = Socket::new()?;
    let mut alice_events = Box::pin(alice.events());
    alice.connect(&addr)?;
    let event =
        next_event(&mut server_events, "alice connecting", |e| matches!(e, Event::PeerConnected { .. }))
            .await;
    let Event::PeerConnected { peer, side, .. } = event else { unreachable!() };
    assert_eq!((peer, side), (alice.identity(), Side::Bind));
    let event =
        next_event(&mut alice_events, "alice's view", |e| matches!(e, Event::PeerConnected { .. })).await;
    let Event::PeerConnected { peer, side, addr: remote } = event else { unreachable!() };
    assert_eq!((peer, side, remote.as_str()), (server.identity(), Side::Connect, addr.as_str()));
    assert_eq!(server.peers(), vec![alice.identity()]);
    assert_eq!(alice.peers(), vec![server.identity()]);

    let bob = Socket::new()?;
    bob.connect(&addr)?;
    connected(&mut server_events, bob.identity()).await;
    assert_eq!(server.peers(), vec![alice.identity(), bob.identity()], "in connection order");

    let alice_id = alice.identity();
    alice.close().await;
    let event =
        next_event(&mut server_events, "alice leaving", |e| matches!(e, Event::PeerDisconnected { .. }))
            .await;
    let Event::PeerDisconnected { peer, reason } = event else { unreachable!() };
    assert_eq!(peer, alice_id);
    assert_eq!(reason, DisconnectReason::PeerClosed);
    assert_eq!(server.peers(), vec![bob.identity()]);

    // The server closing shows on bob's side too.
    let mut bob_events = Box::pin(bob.events());
    let server_id = server.identity();
    server.close().await;
    disconnected(&mut bob_events, server_id).await;
    assert!(bob.peers().is_empty());
    // The server's own stream reports bob's connection ending as it closed.
    let event = next_event(&mut server_events, "bob's connection ending", |e| {
        matches!(e, Event::PeerDisconnected { .. })
    })
    .await;
    assert!(
        matches!(event, Event::PeerDisconnected { peer, reason: DisconnectReason::Closing } if peer == bob.identity())
    );
    Ok(())
}

#[tokio::test]
async fn a_socket_connecting_to_itself_is_refused() -> Result<(), Error> {
    let socket = Socket::new()?;
    let mut events = Box::pin(socket.events());
    let addr = socket.bind("127.0.0.1:0").await?;
    socket.connect(&addr.to_string())?;
    next_event(&mut events, "the refused handshake", |e| matches!(e, Event::HandshakeRefused { .. })).await;
    assert!(socket.peers().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_second_socket_with_a_connected_identity_is_refused() -> Result<(), Error> {
    let server = Socket::new()?;
    let mut events = Box::pin(server.events());
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let identity = smartsock::PeerId::random();
    let first = Socket::builder().identity(identity).build()?;
    first.connect(&addr)?;
    connected(&mut events, identity).await;
    let impostor = Socket::builder().identity(identity).build()?;
    impostor.connect(&addr)?;
    let event = next_event(&mut events, "the refusal", |e| matches!(e, Event::HandshakeRefused { .. })).await;
    assert!(
        matches!(&event, Event::HandshakeRefused { reason: smartsock::RefusedReason::DuplicateIdentity(id), .. } if *id == identity),
        "{event:?}"
    );
    // The first connection is kept.
    assert_eq!(server.peers(), vec![identity]);
    first.send("still me").await?;
    assert_eq!(common::recv(&server).await, "still me");
    Ok(())
}
