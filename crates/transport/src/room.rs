//! [`RoomWaiter`]: waiting until some peer's outbox may take a frame.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// Waits until a condition about the peers' outboxes holds, re-checking it
/// whenever one may have changed: a writer took frames out of an outbox, or
/// a peer came or went. Made by [`Transport::room_waiter`](crate::Transport::room_waiter).
///
/// Dropping it (a caller that stops waiting) holds nothing.
pub struct RoomWaiter {
    signal: Arc<Notify>,
    wait: Option<Pin<Box<OwnedNotified>>>,
}

impl RoomWaiter {
    pub(crate) fn new(signal: Arc<Notify>) -> Self {
        Self { signal, wait: None }
    }

    /// Ready once `ready()` returns true; otherwise registers `cx` to be
    /// woken when it may have become true.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, mut ready: impl FnMut() -> bool) -> Poll<()> {
        loop {
            // Registered before the check, so that a change in between wakes us.
            let signal = &self.signal;
            let wait = self.wait.get_or_insert_with(|| Box::pin(signal.clone().notified_owned()));
            wait.as_mut().enable();
            if ready() {
                self.wait = None;
                return Poll::Ready(());
            }
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Completes once `ready()` returns true.
    pub async fn until(&mut self, mut ready: impl FnMut() -> bool) {
        std::future::poll_fn(|cx| self.poll_until(cx, &mut ready)).await;
    }

    /// Completes at the next change (a drained outbox, a peer coming or
    /// going) after this call.
    pub async fn changed(&mut self) {
        self.wait = None;
        let mut first = true;
        self.until(|| !std::mem::take(&mut first)).await;
    }
}

impl fmt::Debug for RoomWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomWaiter").field("waiting", &self.wait.is_some()).finish()
    }
}
