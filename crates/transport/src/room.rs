//! [`RoomSignal`] and [`RoomWaiter`]: waiting until some peer's outbox may
//! take a frame.
//!
//! The protocol, checked by the loom model (`cargo xtask loom`): a waiter
//! registers its waker under the signal's lock, *then* checks its
//! condition; a writer changes the state (drains an outbox), *then* wakes
//! every registered waiter. Whichever comes first, the waiter either sees
//! the change or is woken by it.

use std::collections::BTreeMap;
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
    /// By waiter id, so woken oldest waiter first (as fair as the order
    /// they registered in, and the same from one drain to the next). A
    /// drain wakes them all and each registers again: found by id, not by a
    /// scan (with n waiters, a scan made each drain cost n² under the lock).
    registered: BTreeMap<u64, Waker>,
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
        for waker in woken.into_values() {
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
        let replaced = match waiters.registered.get_mut(&id) {
            Some(registered) if registered.will_wake(waker) => return,
            Some(registered) => Some(std::mem::replace(registered, waker.clone())),
            None => waiters.registered.insert(id, waker.clone()),
        };
        drop(waiters);
        // A waker's drop may run code of its executor's: not under the lock.
        drop(replaced);
    }

    fn deregister(&self, id: u64) {
        let removed = lock(&self.waiters).registered.remove(&id);
        drop(removed);
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

#[cfg(all(test, not(smartsock_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn each_waiting_waiter_is_woken_once_per_notify_and_a_ready_or_dropped_one_not_at_all() {
        let signal = Arc::new(RoomSignal::default());
        let mut waiters: Vec<(RoomWaiter, Arc<Count>, Waker)> = (0..1000)
            .map(|_| {
                let (count, waker) = counter();
                (RoomWaiter::new(signal.clone()), count, waker)
            })
            .collect();
        for (waiter, _, waker) in &mut waiters {
            // Polled twice before the notify: registered once.
            for _ in 0..2 {
                assert!(waiter.poll_until(&mut Context::from_waker(waker), || false).is_pending());
            }
        }
        // One finds its condition true (it leaves), one is dropped.
        let (mut ready, ready_count, ready_waker) = waiters.pop().expect("1000");
        assert!(ready.poll_until(&mut Context::from_waker(&ready_waker), || true).is_ready());
        let (dropped, dropped_count, _) = waiters.pop().expect("999");
        drop(dropped);
        signal.notify();
        assert!(waiters.iter().all(|(_, count, _)| count.0.load(Ordering::Relaxed) == 1));
        assert_eq!(ready_count.0.load(Ordering::Relaxed) + dropped_count.0.load(Ordering::Relaxed), 0);
        // Woken once: the next notify finds nobody until they register again.
        signal.notify();
        assert!(waiters.iter().all(|(_, count, _)| count.0.load(Ordering::Relaxed) == 1));
        let (waiter, count, waker) = &mut waiters[0];
        assert!(waiter.poll_until(&mut Context::from_waker(waker), || false).is_pending());
        signal.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert_eq!(waiters[1].1.0.load(Ordering::Relaxed), 1);
    }

    /// A waker that notes its number in a shared log when woken.
    struct Note(usize, Arc<std::sync::Mutex<Vec<usize>>>);

    impl Wake for Note {
        fn wake(self: Arc<Self>) {
            self.1.lock().expect("not poisoned").push(self.0);
        }
    }

    #[test]
    fn waiters_are_woken_oldest_first_whatever_order_they_registered_in() {
        let signal = Arc::new(RoomSignal::default());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters: Vec<RoomWaiter> = (0..5).map(|_| RoomWaiter::new(signal.clone())).collect();
        for (i, waiter) in waiters.iter_mut().enumerate().rev() {
            let waker = Waker::from(Arc::new(Note(i, log.clone())));
            assert!(waiter.poll_until(&mut Context::from_waker(&waker), || false).is_pending());
        }
        signal.notify();
        assert_eq!(*log.lock().expect("not poisoned"), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_waiter_polled_with_another_waker_is_woken_through_the_new_one() {
        let signal = Arc::new(RoomSignal::default());
        let mut waiter = RoomWaiter::new(signal.clone());
        let (old, old_waker) = counter();
        let (new, new_waker) = counter();
        assert!(waiter.poll_until(&mut Context::from_waker(&old_waker), || false).is_pending());
        assert!(waiter.poll_until(&mut Context::from_waker(&new_waker), || false).is_pending());
        signal.notify();
        assert_eq!((old.0.load(Ordering::Relaxed), new.0.load(Ordering::Relaxed)), (0, 1));
    }
}
