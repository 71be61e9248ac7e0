//! [`SocketBuilder`]: the async builder's settings, plus where the socket runs.

use std::sync::Arc;
use std::time::Duration;

use smartsock::{Delivery, PeerId, ReconnectStrategy, SendMode, WhenFull};
use tokio::runtime::{Builder, Handle};

use crate::Error;
use crate::socket::{Runtime, Socket};

/// The most worker threads a socket's own runtime may have.
pub const MAX_WORKER_THREADS: usize = 64;

/// Settings for a blocking [`Socket`]: every setting of
/// [`smartsock::SocketBuilder`], and the runtime it runs on.
///
/// ```
/// use std::time::Duration;
/// use smartsock_blocking::{Delivery, Socket};
///
/// # fn main() -> Result<(), smartsock_blocking::Error> {
/// let socket = Socket::builder()
///     .delivery(Delivery::AtLeastOnce)
///     .configure(|async_builder| async_builder.resend_timeout(Duration::from_secs(1)))
///     .worker_threads(2)
///     .build()?;
/// socket.close();
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct SocketBuilder {
    inner: smartsock::SocketBuilder,
    runtime: Option<Handle>,
    worker_threads: usize,
    batch_scheduling: bool,
}

impl std::fmt::Debug for SocketBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketBuilder")
            .field("inner", &self.inner)
            .field("runtime", &self.runtime.is_some())
            .field("worker_threads", &self.worker_threads)
            .field("batch_scheduling", &self.batch_scheduling)
            .finish()
    }
}

impl Default for SocketBuilder {
    fn default() -> Self {
        Self::from(smartsock::SocketBuilder::default())
    }
}

impl From<smartsock::SocketBuilder> for SocketBuilder {
    /// Starts from an async builder already set up.
    fn from(inner: smartsock::SocketBuilder) -> Self {
        Self { inner, runtime: None, worker_threads: 1, batch_scheduling: true }
    }
}

/// Setters passed through to the async builder, documented there.
macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $($arg: $ty),*) -> Self {
                Self { inner: self.inner.$name($($arg),*), ..self }
            }
        )*
    };
}

impl SocketBuilder {
    forward! {
        /// See [`smartsock::SocketBuilder::send_mode`].
        send_mode(mode: SendMode);
        /// See [`smartsock::SocketBuilder::delivery`].
        delivery(delivery: Delivery);
        /// See [`smartsock::SocketBuilder::identity`].
        identity(identity: PeerId);
        /// See [`smartsock::SocketBuilder::reconnect`].
        reconnect(strategy: ReconnectStrategy);
        /// See [`smartsock::SocketBuilder::heartbeat`].
        heartbeat(interval: Duration, timeout: Duration);
        /// See [`smartsock::SocketBuilder::peer_queue`].
        peer_queue(messages: usize);
        /// See [`smartsock::SocketBuilder::peer_queue_bytes`].
        peer_queue_bytes(bytes: usize);
        /// See [`smartsock::SocketBuilder::receive_queue`].
        receive_queue(messages: usize);
        /// See [`smartsock::SocketBuilder::buffer`].
        buffer(messages: usize, bytes: usize);
        /// See [`smartsock::SocketBuilder::when_buffer_full`].
        when_buffer_full(policy: WhenFull);
        /// See [`smartsock::SocketBuilder::when_subscriber_full`].
        when_subscriber_full(policy: WhenFull);
        /// See [`smartsock::SocketBuilder::linger`].
        linger(linger: Duration);
        /// See [`smartsock::SocketBuilder::resend_timeout`].
        resend_timeout(timeout: Duration);
        /// See [`smartsock::SocketBuilder::send_timeout`].
        send_timeout(timeout: Duration);
    }

    /// Any other async setting (tower layers, limits, the whole transport
    /// config): `f` gets the async builder and returns it changed.
    pub fn configure(self, f: impl FnOnce(smartsock::SocketBuilder) -> smartsock::SocketBuilder) -> Self {
        Self { inner: f(self.inner), ..self }
    }

    /// Threads of the runtime the socket starts for itself. Default: 1,
    /// which carries a socket's traffic; more help only with many busy
    /// connections. From 1 to [`MAX_WORKER_THREADS`]. Ignored with
    /// [`runtime`](SocketBuilder::runtime).
    pub fn worker_threads(self, threads: usize) -> Self {
        Self { worker_threads: threads, ..self }
    }

    /// Whether the threads of the socket's own runtime (its workers and
    /// blocking pool) run under Linux's `SCHED_BATCH` policy
    /// ([`smartsock::prefer_batch_scheduling`]). Default: on.
    ///
    /// Each send wakes a worker thread to write what was queued. Under the
    /// default policy that worker preempts the sending thread when they
    /// share a CPU, takes a few messages and parks again; under
    /// `SCHED_BATCH` it waits for a free CPU, so it writes more messages at
    /// once and the sender runs on. In the bench (one-way 64 B, 2-vCPU
    /// machine) this took the blocking API from 3.9M to a median of
    /// 5.0-6.6M messages per second, level with the async socket on a
    /// current-thread runtime; the README has the latest figures, with
    /// this setting off too.
    ///
    /// Turn it off if the worker threads must preempt on wake: when other
    /// threads keep every CPU busy, a woken worker may otherwise wait up to
    /// a time slice. A thread started under another policy or nice value
    /// (the application's, inherited) keeps both. Elsewhere than Linux this
    /// does nothing. Ignored with [`runtime`](SocketBuilder::runtime): that
    /// runtime's threads are yours.
    pub fn batch_scheduling(self, enabled: bool) -> Self {
        Self { batch_scheduling: enabled, ..self }
    }

    /// Runs the socket on this runtime instead of one of its own (share one
    /// runtime among many sockets, or with your async code). It must be a
    /// multi-thread runtime, or a current-thread one that some thread keeps
    /// driving, with time and I/O enabled.
    pub fn runtime(self, handle: Handle) -> Self {
        Self { runtime: Some(handle), ..self }
    }

    /// Checks the settings, starts the runtime if the socket owns one, and
    /// makes the socket.
    pub fn build(self) -> Result<Socket, Error> {
        let runtime = match self.runtime {
            Some(handle) => Runtime::Shared(handle),
            None => {
                if !(1..=MAX_WORKER_THREADS).contains(&self.worker_threads) {
                    return Err(Error::Config(format!(
                        "worker_threads must be from 1 to {MAX_WORKER_THREADS}, not {}",
                        self.worker_threads
                    )));
                }
                let mut builder = Builder::new_multi_thread();
                builder.worker_threads(self.worker_threads).thread_name("smartsock").enable_all();
                if self.batch_scheduling {
                    builder.on_thread_start(smartsock::prefer_batch_scheduling);
                }
                let runtime = builder.build().map_err(Error::Runtime)?;
                Runtime::Owned(Arc::new(runtime.into()))
            }
        };
        // The async socket finds its runtime through the current context.
        let inner = {
            let _entered = runtime.handle().enter();
            self.inner.build()?
        };
        Ok(Socket::from_parts(inner, runtime))
    }
}
