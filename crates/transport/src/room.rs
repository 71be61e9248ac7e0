//! [`RoomSignal`] and [`RoomWaiter`]: waiting until some peer's outbox may
//! take a frame.
//!
//! The protocol, checked by the loom model (`cargo xtask loom`): a waiter
//! registers its waker under the signal's lock, *then* checks its
//! condition; a writer changes the state (drains an outbox), *then* wakes
//! every registered waiter. Whichever comes first, the waiter either sees
//! the change or is woken by it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::sync::{Mutex, lock};

/// The transport's "an outbox may have room" signal: fired by writers after
/// each drained batch and on every change of peers.
#[derive(Default)]
pub(crate) struct RoomSignal {
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    registered: Vec<(u64, Waker)>,
}

impl RoomSignal {
    /// Wakes every waiter registered now.
    pub(crate) fn notify(&self) {
        let woken = {
            let mut waiters = lock(&self.waiters);
            if waiters.registered.is_empty() {
                return;
            }
            std::mem::take(&mut waiters.registered)
        };
        for (_, waker) in woken {
            waker.wake();
        }
    }

    fn new_id(&self) -> u64 {
        let mut waiters = lock(&self.waiters);
        waiters.next_id += 1;
        waiters.next_id
    }

    fn register(&self, id: u64, waker: &Waker) {
        let mut waiters = lock(&self.waiters);
        match waiters.registered.iter_mut().find(|(other, _)| *other == id) {
            Some((_, registered)) => registered.clone_from(waker),
            None => waiters.registered.push((id, waker.clone())),
        }
    }

    fn deregister(&self, id: u64) {
        lock(&self.waiters).registered.retain(|(other, _)| *other != id);
    }
}

/// Waits until a condition about the peers' outboxes holds, re-checking it
/// whenever one may have changed: a writer took frames out of an outbox, or
/// a peer came or went. Made by [`Transport::room_waiter`](crate::Transport::room_waiter).
///
/// Dropping it (a caller that stops waiting) holds nothing.
pub struct RoomWaiter {
    signal: Arc<RoomSignal>,
    id: u64,
}

impl RoomWaiter {
    pub(crate) fn new(signal: Arc<RoomSignal>) -> Self {
        let id = signal.new_id();
        Self { signal, id }
    }

    /// Ready once `ready()` returns true; otherwise registers `cx` to be
    /// woken when it may have become true.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, mut ready: impl FnMut() -> bool) -> Poll<()> {
        // Registered before the check, so that a change in between wakes us.
        self.signal.register(self.id, cx.waker());
        if ready() {
            self.signal.deregister(self.id);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Completes once `ready()` returns true.
    pub async fn until(&mut self, mut ready: impl FnMut() -> bool) {
        std::future::poll_fn(|cx| self.poll_until(cx, &mut ready)).await;
    }
}

impl Drop for RoomWaiter {
    fn drop(&mut self) {
        self.signal.deregister(self.id);
    }
}

impl fmt::Debug for RoomWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomWaiter").field("id", &self.id).finish()
    }
}
