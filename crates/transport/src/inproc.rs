//! In-process transport: `inproc://name` between sockets of one process.
//!
//! The real protocol (handshake, heartbeats, framing) over an in-memory
//! `tokio::io::duplex` pipe, so every behaviour is the same as over TCP. A
//! process-wide registry maps each bound name to its listener's queue of
//! incoming pipes; a connect finds the name there or, if it is not bound yet,
//! fails the try and reconnects later, as a TCP connect to a closed port does.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, OnceLock};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::address::Endpoint;
use crate::listener::Acceptor;

/// Bytes buffered in each direction of an in-process pipe: a writer that gets
/// this far ahead of its reader waits, as a full socket buffer makes it wait.
pub const INPROC_PIPE_BYTES: usize = 256 * 1024;

/// New in-process connections waiting for their listener to accept them (the
/// listen backlog). A connect try that finds it full waits, bounded by the
/// connect timeout.
pub const INPROC_BACKLOG: usize = 128;

type Registry = Mutex<HashMap<String, mpsc::Sender<DuplexStream>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// A bound name; unbinds it when dropped (when the transport closes).
pub(crate) struct InprocAcceptor {
    name: String,
    label: String,
    incoming: mpsc::Receiver<DuplexStream>,
    /// Our own entry, to remove only ours on drop.
    entry: mpsc::Sender<DuplexStream>,
}

impl Acceptor for InprocAcceptor {
    type Stream = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, String)> {
        match self.incoming.recv().await {
            Some(stream) => Ok((stream, self.label.clone())),
            // Cannot happen while `entry` lives; wait for cancellation rather than spin.
            None => std::future::pending().await,
        }
    }
}

impl Drop for InprocAcceptor {
    fn drop(&mut self) {
        let mut names = registry().lock().unwrap_or_else(|e| e.into_inner());
        if names.get(&self.name).is_some_and(|sender| sender.same_channel(&self.entry)) {
            names.remove(&self.name);
        }
    }
}

/// Claims `name` for this process; a name is bound once at a time.
pub(crate) fn bind(name: &str) -> io::Result<(InprocAcceptor, Endpoint)> {
    let mut names = registry().lock().unwrap_or_else(|e| e.into_inner());
    // An entry whose listener is gone (its transport closing right now) is free.
    if names.get(name).is_some_and(|sender| !sender.is_closed()) {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "the name is already bound in this process"));
    }
    let (entry, incoming) = mpsc::channel(INPROC_BACKLOG);
    names.insert(name.to_owned(), entry.clone());
    let endpoint = Endpoint::Inproc(name.to_owned());
    Ok((InprocAcceptor { name: name.to_owned(), label: endpoint.to_string(), incoming, entry }, endpoint))
}

/// One connect try: a new pipe, one end handed to the listener.
pub(crate) async fn connect(name: &str) -> io::Result<(DuplexStream, String)> {
    let listener = registry().lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
    let refused =
        || io::Error::new(io::ErrorKind::ConnectionRefused, "nothing is bound to this in-process name");
    let listener = listener.ok_or_else(refused)?;
    let (ours, theirs) = tokio::io::duplex(INPROC_PIPE_BYTES);
    listener.send(theirs).await.map_err(|_| refused())?;
    Ok((ours, format!("inproc://{name}")))
}
