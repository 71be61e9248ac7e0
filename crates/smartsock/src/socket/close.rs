//! Closing a [`Socket`]: what it does, and what it reports.

use std::sync::atomic::Ordering;

use smartsock_transport::{DropReason, Event};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::Socket;

impl Socket {
    /// Closes gracefully and reports what it could not confirm as
    /// delivered.
    ///
    /// In order, each step bounded by the linger
    /// ([`SocketBuilder::linger`](crate::SocketBuilder::linger)):
    /// 1. refuses new sends (they fail at once and hand the message back);
    /// 2. waits for messages buffered for lack of a peer to find one; those
    ///    that never do are dropped and counted (an `Event::Dropped`);
    /// 3. under at-least-once, waits for every message sent to be
    ///    acknowledged;
    /// 4. closes every connection so that nothing it accepted is destroyed:
    ///    it writes what is queued, shuts down its write side, and keeps
    ///    reading until the peer closes its end too, which confirms that the
    ///    peer read everything. A connection whose peer does not do so
    ///    within the linger is cut, and what it wrote is counted as
    ///    unconfirmed (a peer that is alive but reads slowly needs a linger
    ///    long enough for it to read what is queued).
    ///
    /// Unacknowledged at-least-once messages are handed back on
    /// [`undelivered`](Socket::undelivered). Received messages can still be
    /// taken with [`recv`](Socket::recv), which then returns `None`.
    ///
    /// Every clone may call it, at the same time too: each call returns
    /// once the one graceful close has finished, with its report.
    ///
    /// ```
    /// use smartsock::Socket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// let server = Socket::new()?;
    /// let addr = server.bind("127.0.0.1:0").await?;
    /// let client = Socket::new()?;
    /// client.connect(&addr.to_string())?;
    /// client.send("hello").await?;
    /// assert_eq!(server.recv().await.expect("open"), "hello");
    ///
    /// // The server closes too, which confirms it read everything.
    /// let (client_report, _) = tokio::join!(client.close(), server.close());
    /// assert!(client_report.is_complete(), "{client_report:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) -> CloseReport {
        self.inner.closed.store(true, Ordering::Release);
        *self.inner.close_done.get_or_init(|| self.close_gracefully()).await
    }

    async fn close_gracefully(&self) -> CloseReport {
        let linger = self.inner.transport.config().linger;
        let mut stranded = 0;
        if timeout(linger, self.inner.peer_set.flushed()).await.is_err() {
            stranded = self.inner.peer_set.buffered() as u64;
            warn!(stranded, "closing with messages that never found a peer");
            self.inner.transport.emit(Event::Dropped {
                peer: None,
                count: stranded,
                reason: DropReason::PeerGone,
            });
        }
        if let Some(reliability) = &self.inner.reliability {
            if timeout(linger, reliability.settled()).await.is_err() {
                debug!(in_flight = reliability.in_flight(), "closing with unacknowledged messages");
            }
        }
        // The connections end before the pending table is counted: no ACK
        // can arrive after the count.
        let unconfirmed = self.inner.transport.close().await;
        let report = match &self.inner.reliability {
            Some(reliability) => {
                // An ACK is the confirmation here; what the connections
                // wrote without one is still pending, and buffered
                // messages are pending too.
                let unacknowledged = reliability.in_flight() as u64;
                reliability.shutdown();
                CloseReport { stranded, unconfirmed: 0, unacknowledged }
            }
            None => CloseReport { stranded, unconfirmed, unacknowledged: 0 },
        };
        if !report.is_complete() {
            warn!(?report, "closed without confirming every message as delivered");
        }
        report
    }
}

/// What [`Socket::close`] could not confirm as delivered.
///
/// Under at-most-once, a message counts as delivered once the peer it went
/// to has read everything its connection carried (it closed its end after
/// ours); under at-least-once, once it was acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Messages still waiting for a peer when the linger ran out, dropped
    /// (at-least-once: handed back, and counted in `unacknowledged` too).
    pub stranded: u64,
    /// At-most-once: messages written to, or still queued for, connections
    /// whose peer did not confirm within the linger that it had read them.
    /// They may have arrived; nothing says so.
    pub unconfirmed: u64,
    /// At-least-once: messages not acknowledged, handed back on
    /// [`Socket::undelivered`].
    pub unacknowledged: u64,
}

impl CloseReport {
    /// Messages the close could not confirm as delivered, each counted once.
    pub fn not_confirmed(&self) -> u64 {
        // At-least-once counts stranded messages among the unacknowledged;
        // at-most-once has none of those.
        self.unacknowledged.max(self.stranded + self.unconfirmed)
    }

    /// Whether every message sent was confirmed as delivered.
    pub fn is_complete(&self) -> bool {
        self.not_confirmed() == 0
    }
}
