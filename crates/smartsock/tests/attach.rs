//! Streams opened by someone else, adopted as peers: never reconnected, and
//! their end is an event.

mod common;

use common::{next_event, recv, within};
use smartsock::{DisconnectReason, Error, Event, RefusedReason, Side, Socket};

/// `(server, client)` joined by the two ends of one stream.
fn attached<S>(a: S, b: S) -> Result<(Socket, Socket, String, String), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (server, client) = (Socket::new()?, Socket::new()?);
    let server_label = server.attach(a, Side::Bind)?;
    let client_label = client.attach(b, Side::Connect)?;
    Ok((server, client, server_label, client_label))
}

#[cfg(unix)]
#[tokio::test]
async fn a_std_unix_stream_pair_carries_messages() -> Result<(), Error> {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let [a, b] = [a, b].map(|s| {
        s.set_nonblocking(true).expect("non-blocking");
        tokio::net::UnixStream::from_std(s).expect("into tokio")
    });
    let (server, client, server_label, client_label) = attached(a, b)?;
    let mut events = Box::pin(server.events());
    assert_ne!(server_label, client_label);
    assert!(server_label.starts_with("attached#"), "{server_label}");

    client.send("over the pair").await?;
    assert_eq!(recv(&server).await, "over the pair");
    within("the peer", server.wait_for_peers(1)).await;
    server.send_to(client.identity(), "and back").await?;
    assert_eq!(recv(&client).await, "and back");
    // Events name the stream by the label attach returned.
    let event = next_event(&mut events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. })).await;
    assert_eq!(event, Event::PeerConnected { peer: client.identity(), addr: server_label, side: Side::Bind });
    Ok(())
}

#[tokio::test]
async fn streams_from_a_tcp_accept_loop_the_test_owns() -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Socket::new()?;
    let mut events = Box::pin(server.events());
    let clients: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    let mut labels = Vec::new();
    for client in &clients {
        let (dialed, accepted) = within("a TCP connection", async {
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept())
        })
        .await;
        labels.push(server.attach(accepted.expect("accept").0, Side::Bind)?);
        client.attach(dialed.expect("connect"), Side::Connect)?;
    }
    within("three peers", server.wait_for_peers(3)).await;
    let mut reported = Vec::new();
    for _ in 0..3 {
        let event =
            next_event(&mut events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. })).await;
        let Event::PeerConnected { addr, side, .. } = event else { unreachable!() };
        assert_eq!(side, Side::Bind);
        reported.push(addr);
    }
    reported.sort();
    labels.sort();
    assert_eq!(reported, labels);

    for (i, client) in clients.iter().enumerate() {
        client.send(format!("client {i}")).await?;
    }
    let mut got: Vec<_> = Vec::new();
    for _ in 0..3 {
        got.push(recv(&server).await);
    }
    got.sort();
    assert_eq!(got, ["client 0", "client 1", "client 2"]);
    Ok(())
}

#[tokio::test]
async fn the_end_of_an_attached_stream_is_an_event_and_it_is_not_reconnected() -> Result<(), Error> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, client, server_label, _) = attached(a, b)?;
    let mut events = Box::pin(server.events());
    within("the peer", server.wait_for_peers(1)).await;

    let gone = client.identity();
    within("close", client.close()).await;
    let event =
        next_event(&mut events, "PeerDisconnected", |e| matches!(e, Event::PeerDisconnected { .. })).await;
    assert_eq!(event, Event::PeerDisconnected { peer: gone, reason: DisconnectReason::PeerClosed });
    assert!(server.peers().is_empty());

    // What comes next is the next thing the test does, not a reconnect try.
    let newcomer = Socket::new()?;
    let (c, d) = tokio::io::duplex(64 * 1024);
    let label = server.attach(c, Side::Bind)?;
    newcomer.attach(d, Side::Connect)?;
    let next = within("the next event", futures::StreamExt::next(&mut events)).await.expect("open");
    assert_eq!(
        next,
        Event::PeerConnected { peer: newcomer.identity(), addr: label.clone(), side: Side::Bind }
    );
    assert_ne!(label, server_label);
    Ok(())
}

#[tokio::test]
async fn a_stream_that_ends_before_its_handshake_is_refused_by_label() -> Result<(), Error> {
    let (a, b) = tokio::io::duplex(1024);
    drop(b);
    let server = Socket::new()?;
    let mut events = Box::pin(server.events());
    let label = server.attach(a, Side::Connect)?;
    let event =
        next_event(&mut events, "HandshakeRefused", |e| matches!(e, Event::HandshakeRefused { .. })).await;
    let Event::HandshakeRefused { addr, reason } = event else { unreachable!() };
    assert_eq!(addr, label);
    assert!(matches!(reason, RefusedReason::Io(_)), "{reason:?}");
    Ok(())
}
