//! [`Transport`]: the handle that binds, connects and closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use smartsock_framing::PeerId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::connection::{self, Served};
use crate::event::{Event, RefusedReason, Side};
use crate::inbound::Inbound;
use crate::peer::{AckReceiver, OrphanReceiver, PeerSnapshot, PeerTable, SharedSink};
use crate::room::RoomWaiter;
use crate::shared::Shared;
use crate::watch::{Events, PeerWatch};
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
    shared: Arc<Shared>,
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
    /// A transport with `config`. Call it inside a tokio runtime: its tasks run there.
    // It returns the handle together with the receiving ends, which only the
    // layers above may own; one call keeps them from being made twice.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(config: TransportConfig) -> Result<TransportParts, TransportError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let inbound = Inbound::new(config.inbound_capacity, config.inbound_bytes);
        let (acks_tx, acks) = mpsc::channel(config.ack_capacity);
        let (orphans_tx, orphans) = mpsc::channel(ORPHAN_QUEUE);
        let (events, _) = broadcast::channel(config.event_capacity);
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
            snapshot: ArcSwap::from_pointee(PeerSnapshot::new(PeerTable::from(Vec::new()))),
            inbound: inbound.clone(),
            acks: acks_tx,
            ack_sink: ack_sink.clone(),
            orphans: orphans_tx,
            events,
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
            local_addrs: Mutex::new(Vec::new()),
            room: Arc::new(Notify::new()),
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
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Listens on `addr` (`host:port`; port 0 picks a free port) and accepts
    /// peers until closed. Returns the address actually bound.
    pub async fn bind(&self, addr: &str) -> Result<SocketAddr, TransportError> {
        self.check_open()?;
        check_address(addr)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind { addr: addr.to_owned(), source })?;
        let local =
            listener.local_addr().map_err(|source| TransportError::Bind { addr: addr.to_owned(), source })?;
        self.shared.local_addrs.lock().unwrap_or_else(|e| e.into_inner()).push(local);
        debug!(%local, "bound");
        let shared = self.shared.clone();
        self.spawn(accept_loop(shared, listener));
        Ok(local)
    }

    /// Keeps a connection to `addr` (`host:port`) for the transport's whole
    /// life. Returns at once; the name is resolved again on every try, each
    /// try is bounded by [`TransportConfig::connect_timeout`], and tries are
    /// spaced by [`TransportConfig::reconnect`]. Watch [`events`](Transport::events)
    /// or [`peers`](Transport::peers) to see the peer come up.
    pub fn connect(&self, addr: &str) -> Result<(), TransportError> {
        check_address(addr)?;
        if addr.ends_with(":0") {
            return Err(TransportError::BadAddress {
                addr: addr.to_owned(),
                reason: "cannot connect to port 0",
            });
        }
        let target: Arc<str> = addr.into();
        self.connect_with(addr, move || {
            let target = target.clone();
            async move {
                let stream = TcpStream::connect(&*target).await?;
                stream.set_nodelay(true)?;
                let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| target.to_string());
                Ok((stream, remote))
            }
        })
    }

    /// Like [`connect`](Transport::connect), over any byte stream: `connector`
    /// is called for every try and yields a stream and the remote address to
    /// report. This is how TLS, WebSocket or Unix sockets plug in.
    pub fn connect_with<F, Fut, S>(&self, label: &str, connector: F) -> Result<(), TransportError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.check_open()?;
        let shared = self.shared.clone();
        self.spawn(reconnect_loop(shared, label.into(), connector));
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
            connection::serve(shared, stream, side, remote, None).await;
        });
        Ok(())
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
        self.shared.snapshot.load().table().clone()
    }

    /// Runs `f` on the connected peers now, without taking a lock or a
    /// reference count: the way the send path looks at the peers.
    pub fn with_peers<R>(&self, f: impl FnOnce(&PeerSnapshot) -> R) -> R {
        f(&self.shared.snapshot.load())
    }

    /// A stream of [`Event`]s from now on. A reader more than
    /// [`TransportConfig::event_capacity`] events behind loses the oldest
    /// (and is told so by [`EventsError::Lagged`](crate::EventsError::Lagged)); the transport never waits for it.
    pub fn events(&self) -> Events {
        Events(self.shared.events.subscribe())
    }

    /// Publishes an event to [`events`](Transport::events) subscribers: the
    /// layers above report their own drops this way.
    pub fn emit(&self, event: Event) {
        self.shared.emit(event);
    }

    /// The addresses bound so far.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.local_addrs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether [`close`](Transport::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Completes once [`close`](Transport::close) has been called (or the last
    /// handle dropped).
    pub async fn closed(&self) {
        self.shared.cancel.cancelled().await;
    }

    /// Stops accepting and reconnecting, gives every connection up to
    /// [`TransportConfig::linger`] to write what is queued, closes them, and
    /// returns once every task of the transport has ended. The inbound queue
    /// is closed too: what is in it can still be received.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        self.shared.inbound.close();
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

/// Refuses what is plainly not `host:port` before any I/O.
fn check_address(addr: &str) -> Result<(), TransportError> {
    let bad = |reason| Err(TransportError::BadAddress { addr: addr.to_owned(), reason });
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("expected host:port");
    };
    if host.is_empty() {
        return bad("the host is empty");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return bad("an IPv6 host must be written in brackets, as [::1]:port");
    }
    if port.parse::<u16>().is_err() {
        return bad("the port must be a number from 0 to 65535");
    }
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let permit = tokio::select! {
            permit = shared.handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shared.cancel.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%remote, error = %e, "cannot set TCP_NODELAY");
                }
                let task = connection::serve(
                    shared.clone(),
                    stream,
                    Side::Bind,
                    remote.to_string().into(),
                    Some(permit),
                );
                shared.tracker.spawn_on(
                    async move {
                        task.await;
                    },
                    &shared.runtime,
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::select! {
                    () = sleep(Duration::from_millis(100)) => {}
                    () = shared.cancel.cancelled() => return,
                }
            }
        }
    }
}

async fn reconnect_loop<F, Fut, S>(shared: Arc<Shared>, label: Arc<str>, mut connector: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            attempt = timeout(shared.config.connect_timeout, connector()) => attempt,
            () = shared.cancel.cancelled() => return,
        };
        match attempt {
            Ok(Ok((stream, remote))) => {
                match connection::serve(shared.clone(), stream, Side::Connect, remote.into(), None).await {
                    Served::Up => failures = 0,
                    Served::Refused(RefusedReason::OwnIdentity) => {
                        // Trying again would meet ourselves again, for ever.
                        warn!(addr = %label, "connected to itself: no longer connecting to this address");
                        return;
                    }
                    Served::Refused(RefusedReason::DuplicateIdentity(peer)) => {
                        // That peer is already connected (through another
                        // address): try again once it leaves, not every 100 ms.
                        let mut table = shared.table.subscribe();
                        tokio::select! {
                            _ = table.wait_for(|peers| peers.iter().all(|p| p.id != peer)) => {}
                            () = shared.cancel.cancelled() => return,
                        }
                    }
                    Served::Refused(_) | Served::Failed => {}
                }
            }
            Ok(Err(e)) => debug!(addr = %label, error = %e, "connect failed"),
            Err(_) => debug!(addr = %label, "connect timed out"),
        }
        if shared.cancel.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        let delay = shared.config.reconnect.delay(failures);
        debug!(addr = %label, attempt = failures, ?delay, "reconnecting");
        shared.emit(Event::Reconnecting { addr: label.to_string(), attempt: failures, delay });
        tokio::select! {
            () = sleep(delay) => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_are_checked_before_any_io() {
        for good in ["127.0.0.1:0", "localhost:5555", "[::1]:80", "example.com:65535"] {
            assert!(check_address(good).is_ok(), "{good} refused");
        }
        for bad in ["", "localhost", ":80", "host:port", "host:65536", "::1:80", "host:-1"] {
            assert!(check_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn connect_refuses_port_zero_at_once() {
        let parts = super::Transport::new(crate::TransportConfig::default()).unwrap();
        let refused = parts.transport.connect("127.0.0.1:0");
        assert!(matches!(refused, Err(crate::TransportError::BadAddress { .. })), "{refused:?}");
    }
}
