//! [`Socket`]: the async socket, driven from ordinary threads.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smartsock::patterns::SendErrorKind;
use smartsock::{Bytes, Endpoint, PeerId, TryRecvError};
use tokio::runtime::Handle;

use crate::{Error, RecvTimeoutError, SocketBuilder, park};

/// Where a socket's tasks run.
#[derive(Clone)]
pub(crate) enum Runtime {
    /// Started by the socket, stopped when its last clone goes.
    Owned(Arc<OwnedRuntime>),
    /// Handed in by the user, who keeps it running.
    Shared(Handle),
}

impl Runtime {
    pub(crate) fn handle(&self) -> &Handle {
        match self {
            Self::Owned(owned) => owned.0.as_ref().expect("present until dropped").handle(),
            Self::Shared(handle) => handle,
        }
    }
}

/// A runtime that stops when dropped, without the panic tokio raises when a
/// runtime is dropped inside async code.
pub(crate) struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl From<tokio::runtime::Runtime> for OwnedRuntime {
    fn from(runtime: tokio::runtime::Runtime) -> Self {
        Self(Some(runtime))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.0.take() else { return };
        if Handle::try_current().is_ok() {
            // Blocking is not allowed here: let the workers wind down alone.
            runtime.shutdown_background();
        } else {
            // Long enough for tasks ending on cancellation (a listener
            // removing its socket file) to finish; they do not wait on peers.
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A smart socket for threaded code: the same socket as
/// [`smartsock::Socket`], every call blocking the calling thread until done.
///
/// Cheap to clone; clones share one socket. Closed by [`close`](Socket::close),
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct Socket {
    // Declared first, so dropped before the runtime it runs on.
    inner: smartsock::Socket,
    runtime: Runtime,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Socket {
    /// A socket with the default settings, on a runtime of its own.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// Settings: send mode, delivery, limits, and the runtime.
    pub fn builder() -> SocketBuilder {
        SocketBuilder::default()
    }

    pub(crate) fn from_parts(inner: smartsock::Socket, runtime: Runtime) -> Self {
        Self { inner, runtime }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.handle().block_on(future)
    }

    /// This socket's identity, as peers see it.
    pub fn identity(&self) -> PeerId {
        self.inner.identity()
    }

    /// Listens on `addr` (`host:port`, `tcp://`, `unix://`, `inproc://`; see
    /// [`smartsock::Socket::bind`]). Returns where it listens.
    pub fn bind(&self, addr: &str) -> Result<Endpoint, Error> {
        Ok(self.block_on(self.inner.bind(addr))?)
    }

    /// Connects to `addr` and stays connected, reconnecting for the
    /// socket's whole life. Returns at once; what is sent meanwhile is buffered.
    pub fn connect(&self, addr: &str) -> Result<(), Error> {
        Ok(self.inner.connect(addr)?)
    }

    /// Sends by the socket's send mode; blocks while the queue it needs is full.
    pub fn send(&self, message: impl Into<Bytes>) -> Result<(), Error> {
        // A message that can go now goes from this thread; only a send that
        // has to wait enters the runtime.
        match self.inner.send_now(message).map_err(waiting_payload) {
            Err(Ok(payload)) => Ok(self.block_on(self.inner.send(payload))?),
            Err(Err(error)) => Err(error.into()),
            Ok(()) => Ok(()),
        }
    }

    /// Sends to exactly one peer; fails at once (message inside) if it is not connected.
    pub fn send_to(&self, peer: PeerId, message: impl Into<Bytes>) -> Result<(), Error> {
        match self.inner.send_to_now(peer, message).map_err(waiting_payload) {
            Err(Ok(payload)) => Ok(self.block_on(self.inner.send_to(peer, payload))?),
            Err(Err(error)) => Err(error.into()),
            Ok(()) => Ok(()),
        }
    }

    /// Blocks until a message arrives from any peer; `None` once the socket
    /// is closed (by any thread) and every message received has been taken.
    pub fn recv(&self) -> Option<Bytes> {
        self.recv_from().map(|(_, message)| message)
    }

    /// Like [`recv`](Socket::recv), with the sender's identity.
    pub fn recv_from(&self) -> Option<(PeerId, Bytes)> {
        match self.inner.try_recv_from() {
            Ok(message) => Some(message),
            Err(TryRecvError::Empty) => park::wait(self.inner.recv_from(), None).flatten(),
            Err(_) => None,
        }
    }

    /// Like [`recv`](Socket::recv), waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Bytes, RecvTimeoutError> {
        self.recv_from_timeout(timeout).map(|(_, message)| message)
    }

    /// Like [`recv_from`](Socket::recv_from), waiting at most `timeout`.
    pub fn recv_from_timeout(&self, timeout: Duration) -> Result<(PeerId, Bytes), RecvTimeoutError> {
        match self.inner.try_recv_from() {
            Ok(message) => return Ok(message),
            Err(TryRecvError::Empty) => {}
            Err(_) => return Err(RecvTimeoutError::Closed),
        }
        // A timeout too long to add to now waits without one.
        let deadline = Instant::now().checked_add(timeout);
        match park::wait(self.inner.recv_from(), deadline) {
            Some(Some(message)) => Ok(message),
            Some(None) => Err(RecvTimeoutError::Closed),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// The messages as they arrive, until the socket is closed.
    pub fn messages(&self) -> Messages<'_> {
        Messages { socket: self }
    }

    /// The identities of the peers connected now.
    pub fn peers(&self) -> Vec<PeerId> {
        self.inner.peers()
    }

    /// What the socket is doing, as [`smartsock::Socket::stats`] tells:
    /// per peer and per socket counters and depths. Never blocks.
    pub fn stats(&self) -> smartsock::SocketStats {
        self.inner.stats()
    }

    /// Blocks until at least `count` peers are connected (true), the socket
    /// closes or `timeout` passes (false).
    pub fn wait_for_peers(&self, count: usize, timeout: Duration) -> bool {
        self.block_on(async { tokio::time::timeout(timeout, self.inner.wait_for_peers(count)).await })
            .unwrap_or(false)
    }

    /// Closes gracefully, as [`smartsock::Socket::close`] does, and returns
    /// when done, with what it could not confirm as delivered. Threads
    /// blocked in [`recv`](Socket::recv) get what is still queued, then `None`.
    pub fn close(&self) -> smartsock::CloseReport {
        self.block_on(self.inner.close())
    }

    /// The async socket underneath, for what this API does not offer
    /// (events, streams, the transport); run it on [`runtime`](Socket::runtime).
    pub fn as_async(&self) -> &smartsock::Socket {
        &self.inner
    }

    /// The runtime the socket runs on.
    pub fn runtime(&self) -> &Handle {
        self.runtime.handle()
    }
}

/// The messages of a socket as they arrive, ending when it is closed. Made
/// by [`Socket::messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    socket: &'a Socket,
}

impl Iterator for Messages<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.socket.recv()
    }
}

impl<'a> IntoIterator for &'a Socket {
    type Item = Bytes;
    type IntoIter = Messages<'a>;

    fn into_iter(self) -> Messages<'a> {
        self.messages()
    }
}

/// A send that does not wait, refused because it would have to: its
/// payload, to send again in the runtime, where it waits. Any other error
/// as it is.
fn waiting_payload(error: smartsock::Error) -> Result<Bytes, smartsock::Error> {
    if error.send_kind() != Some(&SendErrorKind::WouldWait) {
        return Err(error);
    }
    Ok(error.into_payload().expect("a refused send holds its message"))
}
