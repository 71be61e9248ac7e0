//! The connect end's life: reconnecting to a restarted bind end over
//! loopback TCP, name resolution, and the reconnect schedule to the
//! millisecond over in-memory streams with paused time.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use smartsock_transport::{
    ConnectError, DisconnectReason, Event, Frame, Outgoing, PeerId, ReconnectStrategy, RefusedReason, Side,
};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::test]
async fn a_restarted_bind_end_on_the_same_port_is_reconnected_and_traffic_resumes() {
    let mut client_config = config();
    client_config.reconnect = ReconnectStrategy::fixed(Duration::from_millis(50));
    let client = transport(client_config);
    let mut events = client.transport.events();

    let first = transport(config());
    let addr = first.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    client.transport.connect(&addr.to_string()).unwrap();
    let table = wait_peers(&client.transport, "the first server", |t| t.len() == 1).await;
    assert_eq!(table[0].id(), first.transport.identity());
    table[0].try_send(Outgoing::to_any_peer(Frame::Data("before".into()))).unwrap();
    assert_eq!(&within("before", first.inbound.recv()).await.unwrap().payload[..], b"before");

    first.transport.close().await;
    let reason = next_event(&mut events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => {
            assert_eq!(*peer, first.transport.identity());
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::PeerClosed);
    // It keeps trying while nothing listens.
    for expected in 1..=3 {
        let (seen_addr, attempt, delay) = next_event(&mut events, "Reconnecting", |e| match e {
            Event::Reconnecting { addr, attempt, delay, .. } => Some((addr.clone(), *attempt, *delay)),
            _ => None,
        })
        .await;
        assert_eq!((seen_addr, attempt, delay), (addr.to_string(), expected, Duration::from_millis(50)));
    }

    // A new bind end, new identity, same port.
    let second = transport(config());
    let rebound = second.transport.bind(&addr.to_string()).await.unwrap();
    assert_eq!(rebound, addr);
    let peer = next_event(&mut events, "PeerConnected", |e| match e {
        Event::PeerConnected { peer, side, .. } => {
            assert_eq!(*side, Side::Connect);
            Some(*peer)
        }
        _ => None,
    })
    .await;
    assert_eq!(peer, second.transport.identity());
    let table = wait_peers(&client.transport, "the second server", |t| {
        t.len() == 1 && t[0].id() == second.transport.identity()
    })
    .await;
    table[0].try_send(Outgoing::to_any_peer(Frame::Data("after".into()))).unwrap();
    let message = within("after", second.inbound.recv()).await.unwrap();
    assert_eq!((message.peer, &message.payload[..]), (client.transport.identity(), &b"after"[..]));
    let back = wait_peer_count(&second.transport, 1).await;
    back[0].try_send(Outgoing::to_this_peer(Frame::Data("back".into()))).unwrap();
    assert_eq!(&within("back", client.inbound.recv()).await.unwrap().payload[..], b"back");

    client.transport.close().await;
    second.transport.close().await;
}

#[tokio::test]
async fn a_connect_end_started_before_its_bind_end_gets_through() {
    // Find a free port, then leave it free for a while.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut client_config = config();
    client_config.reconnect = ReconnectStrategy::fixed(Duration::from_millis(20));
    let client = transport(client_config);
    let mut events = client.transport.events();
    client.transport.connect(&format!("127.0.0.1:{port}")).unwrap();
    next_event(&mut events, "a failed try", |e| {
        matches!(e, Event::Reconnecting { attempt: 2, .. }).then_some(())
    })
    .await;
    let server = transport(config());
    server.transport.bind(&format!("127.0.0.1:{port}")).await.unwrap();
    wait_peer_count(&client.transport, 1).await;
    wait_peer_count(&server.transport, 1).await;
    client.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn localhost_names_are_resolved() {
    let server = transport(config());
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    let client = transport(config());
    let mut events = client.transport.events();
    let name = format!("localhost:{}", addr.port());
    client.transport.connect(&name).unwrap();
    let (peer, remote) = next_event(&mut events, "PeerConnected", |e| match e {
        Event::PeerConnected { peer, addr, .. } => Some((*peer, addr.clone())),
        _ => None,
    })
    .await;
    assert_eq!(peer, server.transport.identity());
    // The event names the address actually reached.
    assert_eq!(remote, addr.to_string());
    let table = wait_peer_count(&client.transport, 1).await;
    table[0].try_send(Outgoing::to_any_peer(Frame::Data("by name".into()))).unwrap();
    assert_eq!(&within("DATA", server.inbound.recv()).await.unwrap().payload[..], b"by name");
    client.transport.close().await;
    server.transport.close().await;
}

/// What one connect try yields.
type TryResult = io::Result<(DuplexStream, String)>;
/// One try as the test sees it: its number, when it happened, and the far end if it connected.
type Try = (u32, Instant, Option<DuplexStream>);

/// A connector over in-memory pipes: each try hands the far end to the test.
/// The tries listed in `fail` (1-based) fail instead.
fn memory_connector(
    fail: &'static [u32],
) -> (
    impl FnMut() -> Pin<Box<dyn Future<Output = TryResult> + Send>> + Send + 'static,
    mpsc::UnboundedReceiver<Try>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tries = Arc::new(AtomicU32::new(0));
    let connector = move || {
        let tx = tx.clone();
        let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if fail.contains(&n) {
                let _ = tx.send((n, Instant::now(), None));
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused by the test"));
            }
            let (ours, theirs) = tokio::io::duplex(4096);
            let _ = tx.send((n, Instant::now(), Some(theirs)));
            Ok((ours, format!("memory-{n}")))
        }) as Pin<Box<dyn Future<Output = TryResult> + Send>>
    };
    (connector, rx)
}

async fn next_try(tries: &mut mpsc::UnboundedReceiver<Try>) -> Try {
    within("a connect try", tries.recv()).await.expect("the connector lives")
}

#[tokio::test(start_paused = true)]
async fn reconnect_tries_follow_the_strategy_to_the_millisecond() {
    const PEER: PeerId = PeerId::from_bytes([0x50; 16]);
    let mut config = config();
    config.reconnect = ReconnectStrategy::new(|attempt| Duration::from_millis(100 * u64::from(attempt)));
    config.heartbeat_interval = Duration::from_secs(1);
    config.heartbeat_timeout = Duration::from_secs(3);
    let client = transport(config);
    let id = client.transport.identity();
    let mut events = client.transport.events();
    // Tries 2 and 3 fail to connect.
    let (connector, mut tries) = memory_connector(&[2, 3]);
    client.transport.connect_with("memory", connector).unwrap();

    // Try 1 connects; the test completes the handshake, then hangs up.
    let (n, t1, stream) = next_try(&mut tries).await;
    assert_eq!(n, 1);
    let mut peer = MemPeer::new(stream.unwrap());
    peer.expect(Frame::hello(id)).await;
    peer.send(Frame::hello(PEER)).await;
    wait_peer_count(&client.transport, 1).await;
    assert_eq!(
        any_event(&mut events).await,
        Event::PeerConnected { peer: PEER, addr: "memory-1".into(), side: Side::Connect }
    );
    drop(peer);
    assert_eq!(
        any_event(&mut events).await,
        Event::PeerDisconnected { peer: PEER, reason: DisconnectReason::PeerClosed }
    );
    let down = Instant::now();
    assert_eq!(down, t1);

    // After a connection that was up, the count starts over at 1.
    // Each event says why: the connection ended, then tries 2 and 3 refused.
    let expected = [
        (1, 100, ConnectError::Disconnected),
        (2, 200, ConnectError::Refused),
        (3, 300, ConnectError::Refused),
    ];
    let mut last = down;
    let mut stream = None;
    for (attempt, delay, error) in expected {
        assert_eq!(
            any_event(&mut events).await,
            Event::Reconnecting {
                addr: "memory".into(),
                attempt,
                delay: Duration::from_millis(delay),
                error
            }
        );
        let (n, at, opened) = next_try(&mut tries).await;
        assert_eq!(n, attempt + 1);
        assert_eq!(at - last, Duration::from_millis(delay), "try {n}");
        assert_eq!(opened.is_some(), n == 4, "try {n}");
        last = at;
        stream = opened;
    }

    // Try 4 connects but the handshake is refused: that counts as a failure too.
    let mut peer = MemPeer::new(stream.unwrap());
    peer.expect(Frame::hello(id)).await;
    peer.send(Frame::Hello { version: 2, identity: PEER }).await;
    assert_eq!(
        any_event(&mut events).await,
        Event::HandshakeRefused { addr: "memory-4".into(), reason: RefusedReason::Version(2) }
    );
    assert_eq!(
        any_event(&mut events).await,
        Event::Reconnecting {
            addr: "memory".into(),
            attempt: 4,
            delay: Duration::from_millis(400),
            error: ConnectError::Handshake(RefusedReason::Version(2).to_string()),
        }
    );
    let refused_at = Instant::now();

    // Try 5 connects, then the peer goes silent: torn down at the heartbeat
    // timeout, and the next try comes 100 ms later (the count starts over).
    let (n, at, stream) = next_try(&mut tries).await;
    assert_eq!((n, at - refused_at), (5, Duration::from_millis(400)));
    let mut peer = MemPeer::new(stream.unwrap());
    peer.expect(Frame::hello(id)).await;
    peer.send(Frame::hello(PEER)).await;
    assert!(matches!(any_event(&mut events).await, Event::PeerConnected { .. }));
    let up = Instant::now();
    assert_eq!(
        any_event(&mut events).await,
        Event::PeerDisconnected { peer: PEER, reason: DisconnectReason::HeartbeatTimeout }
    );
    assert_eq!(up.elapsed(), Duration::from_secs(3));
    assert!(matches!(any_event(&mut events).await, Event::Reconnecting { attempt: 1, .. }));
    let (n, at, _stream) = next_try(&mut tries).await;
    assert_eq!((n, at - up), (6, Duration::from_millis(3100)));
    client.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_connect_try_that_hangs_is_cut_at_the_connect_timeout() {
    let mut config = config();
    config.connect_timeout = Duration::from_millis(750);
    config.reconnect = ReconnectStrategy::fixed(Duration::from_millis(50));
    let client = transport(config);
    let mut events = client.transport.events();
    let (tx, mut tries) = mpsc::unbounded_channel();
    client
        .transport
        .connect_with("nowhere", move || {
            let _ = tx.send(Instant::now());
            futures::future::pending::<io::Result<(DuplexStream, String)>>()
        })
        .unwrap();
    let first = within("try 1", tries.recv()).await.unwrap();
    assert!(matches!(any_event(&mut events).await, Event::Reconnecting { attempt: 1, .. }));
    assert_eq!(first.elapsed(), Duration::from_millis(750));
    let second = within("try 2", tries.recv()).await.unwrap();
    assert_eq!(second - first, Duration::from_millis(800));
    client.transport.close().await;
}

#[tokio::test]
async fn reconnecting_says_the_name_did_not_resolve() {
    // `.invalid` never resolves (RFC 6761). Found: retried every 100 ms for
    // ever with no reason given but at DEBUG.
    let client = transport(config());
    let mut events = client.transport.events();
    client.transport.connect("no-such-host.invalid:5555").unwrap();
    let error = next_event(&mut events, "Reconnecting", |e| match e {
        Event::Reconnecting { addr, attempt: 1, error, .. } if addr == "no-such-host.invalid:5555" => {
            Some(error.clone())
        }
        _ => None,
    })
    .await;
    assert!(matches!(error, ConnectError::NameNotResolved(_)), "{error:?}");
    client.transport.close().await;
}

#[tokio::test]
async fn reconnecting_says_the_connection_was_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = transport(config());
    let mut events = client.transport.events();
    client.transport.connect(&format!("127.0.0.1:{port}")).unwrap();
    let error = next_event(&mut events, "Reconnecting", |e| match e {
        Event::Reconnecting { attempt: 1, error, .. } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, ConnectError::Refused);
    assert_eq!(
        Event::Reconnecting { addr: "a:1".into(), attempt: 1, delay: Duration::from_millis(100), error }
            .to_string(),
        "reconnecting to a:1 in 100ms (attempt 1): connection refused"
    );
    client.transport.close().await;
}

/// Log lines captured by the test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_of_failed_connects_warns_once_not_every_try() {
    // Found: a name that never resolves retried every 100 ms for ever, the
    // reason only at DEBUG. Now each try's event says why, and the run of
    // failures reaches WARN once.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = transport(config());
    let mut events = client.transport.events();
    client
        .transport
        .connect_with("memory", || async {
            Err::<(DuplexStream, String), _>(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
        })
        .unwrap();
    for attempt in 1..=20 {
        let error = next_event(&mut events, "Reconnecting", |e| match e {
            Event::Reconnecting { attempt: a, error, .. } if *a == attempt => Some(error.clone()),
            _ => None,
        })
        .await;
        assert_eq!(error, ConnectError::Refused);
    }
    client.transport.close().await;
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = logged.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(warnings[0].contains("cannot connect; still trying"), "{logged}");
    assert!(warnings[0].contains("connection refused"), "{logged}");
}
