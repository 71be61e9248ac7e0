//! Helpers shared by the facade's end-to-end tests: bounded waits, event
//! matching, reserved ports.
//!
//! Every wait here is bounded by [`WAIT`]; a test that hangs fails with a
//! message saying what it was waiting for instead.

// Each test binary uses a different subset of these helpers (and of the
// testkit's, re-exported here).
#![allow(dead_code, unused_imports)]

use futures::{Stream, StreamExt};
use smartsock::{Bytes, Event, PeerId, Socket};

pub(crate) use smartsock_testkit::wire::{number_of, numbered, reserve_port};
pub(crate) use smartsock_testkit::{WAIT, within};

/// The next message on `socket`; fails the test on timeout or if it is closed.
pub(crate) async fn recv(socket: &Socket) -> Bytes {
    within("a message", socket.recv()).await.expect("the socket is open")
}

/// The next message on `socket` with its sender.
pub(crate) async fn recv_from(socket: &Socket) -> (PeerId, Bytes) {
    within("a message", socket.recv_from()).await.expect("the socket is open")
}

/// Skips events until one matches `wanted`, and returns it.
pub(crate) async fn next_event<S>(events: &mut S, what: &str, mut wanted: impl FnMut(&Event) -> bool) -> Event
where
    S: Stream<Item = Event> + Unpin,
{
    within(what, async {
        while let Some(event) = events.next().await {
            if wanted(&event) {
                return event;
            }
        }
        panic!("the events stream ended while waiting for {what}");
    })
    .await
}

/// Waits for `PeerConnected` naming `peer`.
pub(crate) async fn connected<S>(events: &mut S, peer: PeerId)
where
    S: Stream<Item = Event> + Unpin,
{
    next_event(events, "PeerConnected", |e| matches!(e, Event::PeerConnected { peer: p, .. } if *p == peer))
        .await;
}

/// Waits for `PeerDisconnected` naming `peer`.
pub(crate) async fn disconnected<S>(events: &mut S, peer: PeerId)
where
    S: Stream<Item = Event> + Unpin,
{
    next_event(
        events,
        "PeerDisconnected",
        |e| matches!(e, Event::PeerDisconnected { peer: p, .. } if *p == peer),
    )
    .await;
}

/// A bound socket and a socket connected to it, with the handshake done on
/// both ends.
pub(crate) async fn pair() -> (Socket, Socket) {
    let server = Socket::new().expect("server");
    let addr = server.bind("127.0.0.1:0").await.expect("bind");
    let client = Socket::new().expect("client");
    client.connect(&addr.to_string()).expect("connect");
    within("the handshake (server side)", server.wait_for_peers(1)).await;
    within("the handshake (client side)", client.wait_for_peers(1)).await;
    (server, client)
}
