//! The synchronisation primitives of the send core ([`Outbox`](crate::outbox)
//! and [`RoomSignal`](crate::room::RoomSignal)): a [`ShortLock`], or loom's
//! mutex when the crate is built with `--cfg smartsock_loom` for the model
//! checker (`cargo xtask loom`). The [`Inbound`](crate::Inbound) queue uses a
//! [`ShortLock`] too (it is not in the model).

/// The lock of the queues every message passes through (each outbox, the
/// room signal, the inbound queue). It is held for a push (encoding a frame
/// of under 16 KiB, now and then growing the queue's buffer), a swap, a
/// batch moved into the inbound queue, or one write to the stream that does
/// not wait (a sender writing itself while the writer is idle, `direct.rs`);
/// never across an await or a wait, and never while a waker is woken. A
/// spin lock whose waiters give up the CPU (`sched_yield`) between tries,
/// so that a holder that was preempted gets to run. Releasing it is a plain
/// store, where std's mutex, which puts waiters to sleep, must also look
/// for them with an atomic exchange: a second atomic read-modify-write on
/// every message (figures in docs/ARCHITECTURE.md). The shared write half,
/// held across a write that may take long, keeps std's mutex. (The
/// at-least-once table and the receiver's duplicate window, in the
/// reliability crate, are locks of this kind too; their holds are listed
/// there.)
pub(crate) type ShortLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
/// What [`ShortLock::lock`] returns.
pub(crate) type ShortLockGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T, spin::relax::Yield>;

#[cfg(not(smartsock_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(smartsock_loom))]
pub(crate) type Mutex<T> = ShortLock<T>;
#[cfg(not(smartsock_loom))]
pub(crate) type MutexGuard<'a, T> = ShortLockGuard<'a, T>;

#[cfg(smartsock_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(smartsock_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Locks `mutex`. A [`ShortLock`] is not poisoned by a panic (no code path
/// of the send core leaves its state half-changed); loom's mutex is, and its
/// guard is taken back the same.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(smartsock_loom))]
    return mutex.lock();
    #[cfg(smartsock_loom)]
    return mutex.lock().unwrap_or_else(|e| e.into_inner());
}
