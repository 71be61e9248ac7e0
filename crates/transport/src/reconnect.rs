//! The connect end's loop: connect, run the connection, and try again after
//! a delay, with the reason of each failure in `Event::Reconnecting`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use crate::connection::{self, Served, Writes};
use crate::event::{ConnectError, Event, RefusedReason, Side};
use crate::shared::Shared;

pub(crate) async fn reconnect_loop<F, Fut, S>(
    shared: Arc<Shared>,
    label: Arc<str>,
    writes: Writes,
    mut connector: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<(S, String)>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut failures = 0u32;
    // Handshakes in a row that the bind end closed without answering.
    let mut rejections = 0u32;
    // Whether this run of failures has been logged at WARN: once per run.
    let mut warned = false;
    loop {
        let attempt = tokio::select! {
            attempt = timeout(shared.config.connect_timeout, connector()) => attempt,
            () = shared.cancel.cancelled() => return,
        };
        let error = match attempt {
            Ok(Ok((stream, remote))) => {
                // Boxed: the reconnect loop's task need not hold room for a
                // connection while it dials.
                match Box::pin(connection::serve(
                    shared.clone(),
                    stream,
                    Side::Connect,
                    remote.into(),
                    None,
                    writes,
                ))
                .await
                {
                    Served::Up => {
                        if warned {
                            info!(addr = %label, "connected again");
                        }
                        failures = 0;
                        rejections = 0;
                        warned = false;
                        ConnectError::Disconnected
                    }
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
                        ConnectError::Handshake(RefusedReason::DuplicateIdentity(peer).to_string())
                    }
                    Served::Refused(reason) => ConnectError::Handshake(reason.to_string()),
                    Served::Rejected => {
                        rejections = rejections.saturating_add(1);
                        ConnectError::Handshake(
                            "the bind end closed the connection without answering our HELLO".into(),
                        )
                    }
                    Served::Failed => ConnectError::Handshake("the stream ended or failed".into()),
                }
            }
            Ok(Err(e)) => connect_error(&e),
            Err(_) => ConnectError::TimedOut,
        };
        if shared.cancel.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        // A bind end that keeps refusing us is not helped by a try every
        // 100 ms: back off, doubling up to REJECTED_BACKOFF_MAX.
        let delay = shared.config.reconnect.delay(failures).max(rejected_backoff(rejections));
        if failures >= WARN_AFTER_FAILURES && !warned {
            // Once per run of failures, not every try: the events carry each.
            warn!(addr = %label, attempt = failures, %error, "cannot connect; still trying");
            warned = true;
        } else {
            debug!(addr = %label, attempt = failures, ?delay, %error, "reconnecting");
        }
        shared.emit(Event::Reconnecting { addr: label.to_string(), attempt: failures, delay, error });
        tokio::select! {
            () = sleep(delay) => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}

/// The longest wait between tries after the bind end refused us.
const REJECTED_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The least wait after `rejections` refused handshakes in a row: none after
/// none, then 100 ms doubling up to [`REJECTED_BACKOFF_MAX`].
pub(crate) fn rejected_backoff(rejections: u32) -> Duration {
    if rejections == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(100)
        .saturating_mul(1 << rejections.saturating_sub(1).min(10))
        .min(REJECTED_BACKOFF_MAX)
}

/// Failed tries in a row before the reconnect loop warns (once per run):
/// a peer that is starting up or restarting is not worth a warning.
const WARN_AFTER_FAILURES: u32 = 5;

/// A name that did not resolve, told apart from other connect failures.
#[derive(Debug)]
pub(crate) struct NameNotResolved(pub(crate) String);

impl std::fmt::Display for NameNotResolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameNotResolved {}

pub(crate) fn connect_error(error: &io::Error) -> ConnectError {
    if let Some(unresolved) = error.get_ref().and_then(|inner| inner.downcast_ref::<NameNotResolved>()) {
        return ConnectError::NameNotResolved(unresolved.0.clone());
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        io::ErrorKind::TimedOut => ConnectError::TimedOut,
        _ => ConnectError::Io(error.to_string()),
    }
}
