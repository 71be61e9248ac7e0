//! [`Transport`]: the handle that binds, connects and closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use smartsock_framing::PeerId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::address::{Address, Endpoint};
use crate::admission::Admission;
use crate::connection::Writes;
use crate::connection::{self};
use crate::event::{Event, Side};
use crate::inbound::Inbound;
use crate::listener::{accept_loop, bind_tcp};
use crate::peer::{AckReceiver, OrphanReceiver, PeerSnapshot, PeerTable, SharedSink};
use crate::peer_info::PeerInfo;
use crate::reconnect::{NameNotResolved, reconnect_loop};
use crate::room::RoomWaiter;
use crate::shared::Shared;
use crate::snapshot::Snapshots;
use crate::upgrade::{Dialer, Upgrade};
use crate::watch::{EventHub, Events, PeerWatch};
use crate::{TransportConfig, TransportError};

/// Orphan batches (one per disconnect) waiting for the routing layer.
const ORPHAN_QUEUE: usize = 256;

/// What [`Transport::new`] makes: the handle and the receiving ends that the
/// layers above consume.
#[derive(Debug)]
#[non_exhaustive]
pub struct TransportParts {
    /// The handle: bind, connect, peers, events, close.
    pub transport: Transport,
    /// DATA and DATA_REQ payloads from every peer, in one bounded queue
    /// ([`TransportConfig::inbound_capacity`], [`TransportConfig::inbound_bytes`]).
    /// Clone it to receive from several tasks.
    pub inbound: Inbound,
    /// ACKs received: `(peer, msg_id)`, bounded by [`TransportConfig::ack_capacity`].
    pub acks: AckReceiver,
    /// Frames that a disconnected peer never got and that may go elsewhere.
    /// Dropping this receiver makes the transport drop (and count) them instead.
    pub orphans: OrphanReceiver,
}

/// Live, identified connections: binds and accepts, connects and reconnects,
/// handshakes, heartbeats, and moves frames between peers and bounded queues.
///
/// Cheap to clone; clones share one transport. Dropping the last clone closes
/// it as [`close`](Transport::close) does, without waiting (handles made by
/// [`detached`](Transport::detached) do not count).
#[derive(Clone)]
pub struct Transport {
    pub(crate) shared: Arc<Shared>,
    close_on_drop: Option<Arc<CloseOnDrop>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("identity", &self.shared.config.identity)
            .field("peers", &self.shared.table.borrow().len())
            .field("closed", &self.is_closed())
            .field("detached", &self.close_on_drop.is_none())
            .finish()
    }
}

impl Transport {
    /// A transport with `config`. Call it inside a tokio runtime: its tasks
    /// run there, and its listeners belong to it, whichever runtime awaits
    /// [`bind`](Transport::bind).
    // It returns the handle together with the receiving ends, which only the
    // layers above may own; one call keeps them from being made twice.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(config: TransportConfig) -> Result<TransportParts, TransportError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let inbound = Inbound::new(config.inbound_capacity, config.inbound_bytes);
        let (acks_tx, acks) = mpsc::channel(config.ack_capacity);
        let (orphans_tx, orphans) = mpsc::channel(ORPHAN_QUEUE);
        let events = EventHub::new(config.event_capacity);
        let cancel = CancellationToken::new();
        let closed = Arc::new(AtomicBool::new(false));
        let ack_sink = SharedSink::default();
        let shared = Arc::new(Shared {
            cancel: cancel.clone(),
            closed: closed.clone(),
            tracker: TaskTracker::new(),
            runtime,
            peers: Mutex::new(Vec::new()),
            table: watch::Sender::new(PeerTable::from(Vec::new())),
            snapshot: Snapshots::new(PeerSnapshot::new(PeerTable::from(Vec::new()))),
            inbound: inbound.clone(),
            acks: acks_tx,
            ack_sink: ack_sink.clone(),
            orphans: orphans_tx,
            events,
            admission: Admission::new(config.max_handshakes, config.max_handshakes_per_address),
            refusal_log: Default::default(),
            local_addrs: Mutex::new(Vec::new()),
            room: Arc::default(),
            unconfirmed: AtomicU64::new(0),
            certificates: Arc::default(),
            stats: Default::default(),
            config,
        });
        let transport = Self { shared, close_on_drop: Some(Arc::new(CloseOnDrop { closed, cancel })) };
        Ok(TransportParts {
            transport,
            inbound,
            acks: AckReceiver { queue: acks, sink: ack_sink },
            orphans: OrphanReceiver(orphans),
        })
    }

    /// A handle that does not keep the transport open: the transport still
    /// closes when the last ordinary handle is dropped. For the background
    /// tasks of the layers above, which must not keep a socket alive that its
    /// user has let go.
    pub fn detached(&self) -> Transport {
        Self { shared: self.shared.clone(), close_on_drop: None }
    }

    /// This socket's identity.
    pub fn identity(&self) -> PeerId {
        self.shared.config.identity
    }

    /// The settings this transport runs with.
    #[inline]
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Listens on `addr` and accepts peers until closed. Returns where it
    /// listens, as a peer would connect to it.
    ///
    /// - `host:port` or `tcp://host:port`: port 0 picks a free port.
    /// - `unix:///path`: a socket file nobody listens on is removed first; a
    ///   file that is not a socket is an error and left untouched. The file
    ///   is removed again when the transport closes. `unix://@name`: a Linux
    ///   abstract name.
    /// - `inproc://name`: a name in this process, bound once at a time.
    pub async fn bind(&self, addr: &str) -> Result<Endpoint, TransportError> {
        self.check_open()?;
        let address = Address::parse(addr)?;
        let failed = |source| TransportError::Bind { addr: addr.to_owned(), source };
        let endpoint = match address {
            Address::Tcp(host_port) => {
                #[allow(unused_mut)] // without `ws`, a TCP bind has nothing to upgrade
                let mut upgrade = Upgrade::default();
                #[cfg(feature = "ws")]
                {
                    upgrade.websocket = self.shared.config.websocket;
                }
                Endpoint::Tcp(bind_tcp(&self.shared, &host_port, upgrade).await.map_err(failed)?)
            }
            // Every TCP bind end can serve WebSocket peers: `ws://` asks for
            // that even if the configuration turned it off.
            #[cfg(feature = "ws")]
            Address::Ws { host_port, .. } => {
                #[allow(clippy::needless_update)] // `tls` adds a field
                let upgrade = Upgrade { websocket: true, ..Upgrade::default() };
                Endpoint::Tcp(bind_tcp(&self.shared, &host_port, upgrade).await.map_err(failed)?)
            }
            #[cfg(feature = "tls")]
            address @ (Address::Tls(_) | Address::Wss { .. }) => {
                let Some(tls) = self.shared.config.tls_server.clone() else {
                    return Err(TransportError::TlsNotConfigured {
                        addr: addr.to_owned(),
                        needed: "a TLS server configuration to bind",
                        field: "tls_server",
                    });
                };
                let (Address::Tls(host_port) | Address::Wss { host_port, .. }) = &address else {
                    unreachable!("matched above")
                };
                let upgrade = Upgrade {
                    tls: Some(tls),
                    #[cfg(feature = "ws")]
                    websocket: self.shared.config.websocket || address.scheme() == crate::Scheme::Wss,
                };
                Endpoint::Tls(bind_tcp(&self.shared, host_port, upgrade).await.map_err(failed)?)
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                let (acceptor, endpoint) =
                    crate::unix::bind_path(&path, &self.shared.runtime, self.shared.config.outbox_bytes)
                        .await
                        .map_err(failed)?;
                self.spawn(accept_loop(self.shared.clone(), acceptor, Upgrade::default()));
                endpoint
            }
            #[cfg(unix)]
            Address::UnixAbstract(name) => {
                let (acceptor, endpoint) =
                    crate::unix::bind_abstract(&name, &self.shared.runtime, self.shared.config.outbox_bytes)
                        .map_err(failed)?;
                self.spawn(accept_loop(self.shared.clone(), acceptor, Upgrade::default()));
                endpoint
            }
            Address::Inproc(name) => {
                let (acceptor, endpoint) = crate::inproc::bind(&name).map_err(failed)?;
                self.spawn(accept_loop(self.shared.clone(), acceptor, Upgrade::default()));
                endpoint
            }
            #[allow(unreachable_patterns)] // Unix addresses on other platforms
            other => {
                return Err(TransportError::UnsupportedScheme {
                    addr: addr.to_owned(),
                    scheme: other.scheme(),
                });
            }
        };
        debug!(%endpoint, "bound");
        Ok(endpoint)
    }

    /// Dials TLS and WebSocket addresses: refused at once if TLS is asked
    /// for and not configured, or the server name is not a name.
    fn connect_dialer(&self, addr: &str, address: &Address) -> Result<(), TransportError> {
        let (host_port, tls, ws_url) = match address {
            Address::Tls(host_port) => (host_port, true, None),
            Address::Ws { host_port, path } => (host_port, false, Some(format!("ws://{host_port}{path}"))),
            Address::Wss { host_port, path } => (host_port, true, Some(format!("wss://{host_port}{path}"))),
            _ => unreachable!("only TLS and WebSocket addresses are dialled here"),
        };
        if host_port.ends_with(":0") {
            return Err(TransportError::BadAddress {
                addr: addr.to_owned(),
                reason: "cannot connect to port 0",
            });
        }
        #[cfg(feature = "tls")]
        let tls = match tls {
            false => None,
            true => {
                let Some(config) = self.shared.config.tls_client.clone() else {
                    return Err(TransportError::TlsNotConfigured {
                        addr: addr.to_owned(),
                        needed: "a TLS client configuration to connect",
                        field: "tls_client",
                    });
                };
                let name = crate::tls::server_name(host_port, self.shared.config.tls_server_name.as_deref())?;
                Some((config, name))
            }
        };
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        #[cfg(not(feature = "ws"))]
        let _ = ws_url;
        let dialer = Dialer {
            shared: self.shared.clone(),
            host_port: host_port.as_str().into(),
            #[cfg(feature = "tls")]
            label: addr.into(),
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "ws")]
            ws_url: ws_url.map(Into::into),
        };
        self.connect_with(addr, move || dialer.clone().dial())
    }

    /// What is known of the connected peer `id`: address, side and, over
    /// TLS, its verified certificate (subject and alternative names). `None`
    /// if no such peer is connected.
    pub fn peer_info(&self, id: PeerId) -> Option<PeerInfo> {
        let (addr, side) = {
            let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
            let peer = peers.iter().find(|p| p.id == id)?;
            (peer.addr.clone(), peer.side)
        };
        let certificate = self.shared.certificates.get(&addr);
        Some(PeerInfo { id, addr: addr.to_string(), side, certificate })
    }

    /// Keeps a connection to `addr` for the transport's whole life: any
    /// address [`bind`](Transport::bind) takes (`host:port`, `tcp://`,
    /// `unix://`, `inproc://`). Returns at once; a host name is resolved
    /// again on every try, each try is bounded by
    /// [`TransportConfig::connect_timeout`], and tries are spaced by
    /// [`TransportConfig::reconnect`] (a name or socket file not there yet
    /// is tried again the same way). Watch [`events`](Transport::events) or
    /// [`peers`](Transport::peers) to see the peer come up.
    pub fn connect(&self, addr: &str) -> Result<(), TransportError> {
        match Address::parse(addr)? {
            Address::Tcp(host_port) => {
                if host_port.ends_with(":0") {
                    return Err(TransportError::BadAddress {
                        addr: addr.to_owned(),
                        reason: "cannot connect to port 0",
                    });
                }
                let target: Arc<str> = host_port.into();
                self.connect_direct(addr, move || {
                    let target = target.clone();
                    async move {
                        // Resolved apart from the connect, so that a name that
                        // does not resolve is told from a host that refuses.
                        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(&*target)
                            .await
                            .map_err(|e| io::Error::other(NameNotResolved(e.to_string())))?
                            .collect();
                        if resolved.is_empty() {
                            return Err(io::Error::other(NameNotResolved("no address".into())));
                        }
                        let stream = TcpStream::connect(&resolved[..]).await?;
                        stream.set_nodelay(true)?;
                        let remote =
                            stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| target.to_string());
                        Ok((stream, remote))
                    }
                })
            }
            #[cfg(unix)]
            address @ (Address::Unix(_) | Address::UnixAbstract(_)) => {
                let path: Arc<std::path::Path> = match &address {
                    Address::UnixAbstract(name) => crate::unix::abstract_path(name).into(),
                    Address::Unix(path) => path.as_path().into(),
                    _ => unreachable!("matched above"),
                };
                let label: Arc<str> = address.to_string().into();
                let send_buffer = self.shared.config.outbox_bytes;
                self.connect_direct(addr, move || {
                    let (path, label) = (path.clone(), label.clone());
                    async move { crate::unix::connect(&path, &label, send_buffer).await }
                })
            }
            Address::Inproc(name) => {
                let name: Arc<str> = name.into();
                self.connect_direct(addr, move || {
                    let name = name.clone();
                    async move { crate::inproc::connect(&name).await }
                })
            }
            address @ (Address::Tls(_) | Address::Ws { .. } | Address::Wss { .. }) => {
                self.check_open()?;
                self.connect_dialer(addr, &address)
            }
            #[allow(unreachable_patterns)] // Unix addresses on other platforms
            other => Err(TransportError::UnsupportedScheme { addr: addr.to_owned(), scheme: other.scheme() }),
        }
    }

    /// Like [`connect`](Transport::connect), over any byte stream: `connector`
    /// is called for every try and yields a stream and the remote address to
    /// report. This is how TLS, WebSocket or Unix sockets plug in. As with
    /// [`attach`](Transport::attach), such a stream is written to only by
    /// its connection's writer task.
    pub fn connect_with<F, Fut, S>(&self, label: &str, connector: F) -> Result<(), TransportError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.keep_connecting(label, Writes::WriterOnly, connector)
    }

    /// [`connect_with`](Transport::connect_with) for a connector that yields
    /// plain sockets or pipes, which senders may write to themselves.
    fn connect_direct<F, Fut, S>(&self, label: &str, connector: F) -> Result<(), TransportError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.keep_connecting(label, Writes::Direct, connector)
    }

    fn keep_connecting<F, Fut, S>(
        &self,
        label: &str,
        writes: Writes,
        connector: F,
    ) -> Result<(), TransportError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.check_open()?;
        let shared = self.shared.clone();
        self.spawn(reconnect_loop(shared, label.into(), writes, connector));
        Ok(())
    }

    /// Runs the protocol over an already open stream, as the given `side`,
    /// with no reconnection. For custom transports and in-memory tests.
    pub fn serve<S>(&self, stream: S, side: Side, remote: &str) -> Result<(), TransportError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.check_open()?;
        let shared = self.shared.clone();
        let remote: Arc<str> = remote.into();
        self.spawn(async move {
            connection::serve(shared, stream, side, remote, None, Writes::WriterOnly).await;
        });
        Ok(())
    }

    /// Adopts a stream that is already connected (a `TcpStream` from your
    /// own accept loop, one end of a `UnixStream::pair`, a child's pipes
    /// joined, a QUIC stream) as a peer, with the protocol role `side`
    /// (the two ends of one stream must take opposite sides).
    ///
    /// Returns the label that this connection's [`Event`]s carry as its
    /// address (`attached#N`). Someone else opened the stream, so nobody can
    /// open it again: it is never reconnected. Its end is reported as
    /// [`Event::PeerDisconnected`] (or [`Event::HandshakeRefused`], if it
    /// ended before the handshake completed).
    ///
    /// Everything sent to such a peer is written by its connection's writer
    /// task: a stream of unknown kind is never written to from elsewhere.
    /// (On the connections the transport opens or accepts itself over TCP,
    /// Unix sockets and `inproc`, a reply may be written by the task that
    /// sends it, when the writer is idle: one hand-off less.)
    pub fn attach<S>(&self, stream: S, side: Side) -> Result<String, TransportError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        static ATTACHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let label = format!("attached#{}", ATTACHED.fetch_add(1, Ordering::Relaxed));
        self.serve(stream, side, &label)?;
        Ok(label)
    }

    /// The connected peers, updated on every change: `now()` for now,
    /// `changed().await` to wait for the next change.
    pub fn peers(&self) -> PeerWatch {
        PeerWatch(self.shared.table.subscribe())
    }

    /// A waiter for room in the peers' outboxes: for a sender that found
    /// every outbox it may use full.
    pub fn room_waiter(&self) -> RoomWaiter {
        RoomWaiter::new(self.shared.room.clone())
    }

    /// The connected peers now.
    pub fn peer_table(&self) -> PeerTable {
        self.shared.snapshot.load_full().table().clone()
    }

    /// The transport's figures now: every connected peer's traffic, the
    /// last [`MAX_DEPARTED_PEERS`](crate::MAX_DEPARTED_PEERS) departed
    /// peers', totals that survive the peers, and handshake refusals by
    /// reason. Takes the peers' lock and each outbox's once: for monitoring,
    /// not for every message.
    pub fn stats(&self) -> crate::TransportStats {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        let now: Vec<_> = peers.iter().map(|p| p.counters.snapshot(p.queued(), None)).collect();
        drop(peers);
        self.shared.stats.snapshot(now)
    }

    /// The live counters of peer `id`, connected or among the last
    /// departed: for the layers above to count what only they see (drops,
    /// resends) against it.
    pub fn peer_counters(&self, id: PeerId) -> Option<Arc<crate::PeerCounters>> {
        let connected = self.with_peers(|peers| peers.get(id).map(|p| p.counters.clone()));
        self.shared.stats.find(id, connected)
    }

    /// Runs `f` on the connected peers now, without taking a lock: the way
    /// the send path looks at the peers. While the peers are unchanged, a
    /// thread reads its own copy of the table, with no atomic
    /// read-modify-write (see `snapshot.rs`: a thread keeps the tables of a
    /// few transports it read last). `f` may read the peers again, or send,
    /// through any transport: such a read inside it takes the shared table.
    // Always inlined, with the read inside it: see `Snapshots::with`.
    #[inline(always)]
    pub fn with_peers<R>(&self, f: impl FnOnce(&PeerSnapshot) -> R) -> R {
        self.shared.snapshot.with(f)
    }

    /// A stream of [`Event`]s from now on. A reader more than
    /// [`TransportConfig::event_capacity`] connection events behind loses the
    /// oldest (and is told so by [`EventsError::Lagged`](crate::EventsError::Lagged)); the transport never waits for it.
    /// Drops are tallied per peer and reason while unread, so they never
    /// push connection events out (see [`Events`]).
    pub fn events(&self) -> Events {
        self.shared.events.subscribe()
    }

    /// Publishes an event to [`events`](Transport::events) subscribers: the
    /// layers above report their own drops this way.
    pub fn emit(&self, event: Event) {
        self.shared.emit(event);
    }

    /// The TCP addresses bound so far (other transports' endpoints are what
    /// [`bind`](Transport::bind) returned).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.local_addrs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether [`close`](Transport::close) has been called.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Completes once [`close`](Transport::close) has been called (or the last
    /// handle dropped).
    pub async fn closed(&self) {
        self.shared.cancel.cancelled().await;
    }

    /// Stops accepting and reconnecting, and closes every connection so
    /// that what it accepted reaches the peer: each connection writes what
    /// is queued, shuts its write side down (the peer reads everything, then
    /// our end), and keeps reading until the peer's own end, which confirms
    /// it read ours. A connection that gets no such end within
    /// [`TransportConfig::linger`] of this call is cut off, and the messages
    /// it wrote or still held are counted in
    /// [`unconfirmed`](Transport::unconfirmed). Returns once every task of
    /// the transport has ended, with that count. The inbound queue is closed
    /// too: what is in it can still be received.
    pub async fn close(&self) -> u64 {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        self.shared.inbound.close();
        self.unconfirmed()
    }

    /// Messages that closing connections could not confirm as read by their
    /// peer: those written on a connection whose peer did not close its end
    /// within the linger after ours (they may still have arrived, or been
    /// lost in the kernel's buffers when the connection was cut), and those
    /// still queued for it. 0 until [`close`](Transport::close).
    pub fn unconfirmed(&self) -> u64 {
        self.shared.unconfirmed.load(Ordering::Relaxed)
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.is_closed() { Err(TransportError::Closed) } else { Ok(()) }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.shared.tracker.spawn_on(task, &self.shared.runtime);
    }
}

/// Closes the transport when the last ordinary handle goes.
struct CloseOnDrop {
    closed: Arc<AtomicBool>,
    cancel: CancellationToken,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refused_connect_ends_back_off_exponentially_to_a_bound() {
        use crate::reconnect::rejected_backoff;
        use std::time::Duration;
        assert_eq!(rejected_backoff(0), Duration::ZERO);
        assert_eq!(rejected_backoff(1), Duration::from_millis(100));
        assert_eq!(rejected_backoff(2), Duration::from_millis(200));
        assert_eq!(rejected_backoff(6), Duration::from_millis(3200));
        assert_eq!(rejected_backoff(7), Duration::from_secs(5));
        assert_eq!(rejected_backoff(u32::MAX), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn connect_refuses_port_zero_at_once() {
        let parts = super::Transport::new(crate::TransportConfig::default()).unwrap();
        let refused = parts.transport.connect("127.0.0.1:0");
        assert!(matches!(refused, Err(crate::TransportError::BadAddress { .. })), "{refused:?}");
    }
}
