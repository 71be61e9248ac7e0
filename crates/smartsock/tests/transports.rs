//! The socket's behaviour is the same over every transport: each test here
//! is written once against a [`Kind`] and run over TCP, Unix sockets,
//! in-process pipes, mutual TLS, WebSocket and WebSocket inside mutual TLS
//! by `over_every_transport!`.

mod common;
#[cfg(feature = "tls")]
#[path = "../../transport/tests/common/pki.rs"]
mod pki;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{connected, disconnected, next_event, number_of, numbered, recv, recv_from, within};
use smartsock::{Delivery, Endpoint, Error, Event, SendMode, Side, Socket, SocketBuilder};

/// A transport, and fresh addresses on it.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    #[cfg(unix)]
    Unix,
    Inproc,
    #[cfg(feature = "tls")]
    Tls,
    #[cfg(feature = "ws")]
    Ws,
    #[cfg(all(feature = "tls", feature = "ws"))]
    Wss,
}

/// Where tests make their addresses: the temp dirs live as long as the test.
struct Place {
    kind: Kind,
    #[cfg(unix)]
    dir: tempfile::TempDir,
    /// Under TLS, every socket is both a server requiring client
    /// certificates from this CA and a client presenting one.
    #[cfg(feature = "tls")]
    tls: (pki::Pki, pki::Leaf),
}

impl Place {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            #[cfg(unix)]
            dir: tempfile::tempdir().expect("a temp dir"),
            #[cfg(feature = "tls")]
            tls: {
                let ca = pki::Pki::new("test CA");
                let leaf = ca.leaf("client", &["client.example"]);
                (ca, leaf)
            },
        }
    }

    /// A builder for this transport (with TLS configs where it needs them).
    fn builder(&self) -> SocketBuilder {
        let builder = Socket::builder();
        #[cfg(feature = "tls")]
        let builder = {
            let (ca, leaf) = &self.tls;
            builder.tls_server(ca.server(Some(ca))).tls_client(ca.client(Some(leaf)))
        };
        builder
    }

    fn socket(&self) -> Result<Socket, Error> {
        self.builder().build()
    }

    /// The address a peer connects to for a bound endpoint.
    fn dial(&self, endpoint: &Endpoint) -> String {
        match self.kind {
            #[cfg(feature = "ws")]
            Kind::Ws => format!("ws://{}/", endpoint.tcp().unwrap()),
            #[cfg(all(feature = "tls", feature = "ws"))]
            Kind::Wss => format!("wss://{}/", endpoint.tcp().unwrap()),
            _ => endpoint.to_string(),
        }
    }

    /// An address to bind to, letting the system pick what it can.
    fn any(&self) -> String {
        match self.kind {
            Kind::Tcp => "127.0.0.1:0".into(),
            #[cfg(feature = "tls")]
            Kind::Tls => "tls://127.0.0.1:0".into(),
            #[cfg(feature = "ws")]
            Kind::Ws => "ws://127.0.0.1:0/".into(),
            #[cfg(all(feature = "tls", feature = "ws"))]
            Kind::Wss => "wss://127.0.0.1:0/".into(),
            _ => self.unused(),
        }
    }

    /// An address nobody listens on yet, to connect to before binding.
    fn unused(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match self.kind {
            Kind::Tcp => common::reserve_port().to_string(),
            #[cfg(unix)]
            Kind::Unix => format!("unix://{}", self.dir.path().join(format!("s{n}.sock")).display()),
            Kind::Inproc => format!("inproc://transports-{}-{n}", std::process::id()),
            #[cfg(feature = "tls")]
            Kind::Tls => format!("tls://{}", common::reserve_port()),
            #[cfg(feature = "ws")]
            Kind::Ws => format!("ws://{}/", common::reserve_port()),
            #[cfg(all(feature = "tls", feature = "ws"))]
            Kind::Wss => format!("wss://{}/", common::reserve_port()),
        }
    }
}

/// Runs each `async fn name(place: Place) -> Result<(), Error>` as one test per transport.
macro_rules! over_every_transport {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Tcp)).await })*
        }
        #[cfg(unix)]
        mod unix {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Unix)).await })*
        }
        mod inproc {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Inproc)).await })*
        }
        #[cfg(feature = "tls")]
        mod tls {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Tls)).await })*
        }
        #[cfg(feature = "ws")]
        mod ws {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Ws)).await })*
        }
        #[cfg(all(feature = "tls", feature = "ws"))]
        mod wss {
            $(#[tokio::test] async fn $name() -> Result<(), smartsock::Error> { super::$name(super::Place::new(super::Kind::Wss)).await })*
        }
    };
}

over_every_transport!(
    round_robin_shares_exactly,
    publish_reaches_every_subscriber_in_order,
    send_to_reaches_exactly_that_peer,
    connect_end_buffers_until_the_peer_binds,
    client_reconnects_to_a_restarted_server,
    at_least_once_settles_every_message,
);

async fn round_robin_shares_exactly(place: Place) -> Result<(), Error> {
    const TOTAL: usize = 120;
    let sender = place.builder().send_mode(SendMode::RoundRobin).build()?;
    let addr = sender.bind(&place.any()).await?;
    let addr = place.dial(&addr);
    let receivers: Vec<Socket> = (0..3).map(|_| place.socket()).collect::<Result<_, _>>()?;
    for receiver in &receivers {
        receiver.connect(&addr)?;
    }
    within("three receivers", sender.wait_for_peers(3)).await;
    for i in 0..TOTAL {
        sender.send(numbered(i)).await?;
    }
    let mut all = Vec::new();
    for receiver in &receivers {
        let mut share = Vec::new();
        for _ in 0..TOTAL / 3 {
            share.push(number_of(&recv(receiver).await));
        }
        let expected: Vec<usize> = (share[0]..TOTAL).step_by(3).collect();
        assert_eq!(share, expected, "every third message, in order");
        all.extend(share);
    }
    all.sort_unstable();
    assert_eq!(all, (0..TOTAL).collect::<Vec<_>>());
    Ok(())
}

async fn publish_reaches_every_subscriber_in_order(place: Place) -> Result<(), Error> {
    const TOTAL: usize = 100;
    let publisher = place.builder().send_mode(SendMode::Publish).build()?;
    let addr = publisher.bind(&place.any()).await?;
    let addr = place.dial(&addr);
    let subscribers: Vec<Socket> = (0..3).map(|_| place.socket()).collect::<Result<_, _>>()?;
    for subscriber in &subscribers {
        subscriber.connect(&addr)?;
    }
    within("three subscribers", publisher.wait_for_peers(3)).await;
    for i in 0..TOTAL {
        publisher.send(numbered(i)).await?;
    }
    for subscriber in &subscribers {
        for i in 0..TOTAL {
            assert_eq!(recv(subscriber).await, numbered(i));
        }
    }
    Ok(())
}

async fn send_to_reaches_exactly_that_peer(place: Place) -> Result<(), Error> {
    let server = place.socket()?;
    let addr = server.bind(&place.any()).await?;
    let addr = place.dial(&addr);
    let (a, b) = (place.socket()?, place.socket()?);
    a.connect(&addr)?;
    b.connect(&addr)?;
    within("two clients", server.wait_for_peers(2)).await;
    b.send("from b").await?;
    let (sender, message) = recv_from(&server).await;
    assert_eq!((sender, message.as_ref()), (b.identity(), &b"from b"[..]));
    for i in 0..10 {
        server.send_to(b.identity(), numbered(i)).await?;
    }
    for i in 0..10 {
        assert_eq!(recv(&b).await, numbered(i));
    }
    // a got none of them: the next thing it receives is what it is sent now.
    server.send_to(a.identity(), "for a").await?;
    assert_eq!(recv(&a).await, "for a");
    Ok(())
}

async fn connect_end_buffers_until_the_peer_binds(place: Place) -> Result<(), Error> {
    const N: usize = 100;
    let addr = place.unused();
    let client = place.socket()?;
    let mut events = Box::pin(client.events());
    client.connect(&addr)?;
    next_event(&mut events, "a failed connect try", |e| matches!(e, Event::Reconnecting { .. })).await;
    for i in 0..N {
        within("a buffered send", client.send(numbered(i))).await?;
    }
    assert!(client.peers().is_empty());

    let server = place.socket()?;
    assert_eq!(place.dial(&server.bind(&addr).await?), addr);
    for i in 0..N {
        assert_eq!(recv(&server).await, numbered(i));
    }
    Ok(())
}

async fn client_reconnects_to_a_restarted_server(place: Place) -> Result<(), Error> {
    const OUTAGE: usize = 30;
    let addr = place.unused();
    let first = place.socket()?;
    first.bind(&addr).await?;
    let client = place.socket()?;
    let mut events = Box::pin(client.events());
    client.connect(&addr)?;
    connected(&mut events, first.identity()).await;
    client.send("before").await?;
    assert_eq!(recv(&first).await, "before");

    let first_id = first.identity();
    first.close().await;
    drop(first);
    disconnected(&mut events, first_id).await;
    let event = next_event(&mut events, "a reconnect try", |e| matches!(e, Event::Reconnecting { .. })).await;
    let Event::Reconnecting { addr: tried, .. } = event else { unreachable!() };
    assert_eq!(tried, addr);
    for i in 0..OUTAGE {
        client.send(numbered(i)).await?;
    }

    // The same address again: the closed server let go of its port, file or name.
    let second = place.socket()?;
    second.bind(&addr).await?;
    let event = next_event(&mut events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. })).await;
    let Event::PeerConnected { peer, side, .. } = event else { unreachable!() };
    assert_eq!((peer, side), (second.identity(), Side::Connect));
    for i in 0..OUTAGE {
        assert_eq!(recv(&second).await, numbered(i));
    }
    Ok(())
}

async fn at_least_once_settles_every_message(place: Place) -> Result<(), Error> {
    const N: usize = 50;
    let receiver = place.socket()?;
    let addr = receiver.bind(&place.any()).await?;
    let addr = place.dial(&addr);
    let sender = place.builder().delivery(Delivery::AtLeastOnce).build()?;
    sender.connect(&addr)?;
    for i in 0..N {
        sender.send(numbered(i)).await?;
    }
    for i in 0..N {
        assert_eq!(recv(&receiver).await, numbered(i));
    }
    within("every ACK", sender.settled()).await;
    assert_eq!(sender.in_flight(), 0);
    Ok(())
}
