//! The synchronisation primitives of the send core ([`Outbox`](crate::outbox)
//! and [`RoomSignal`](crate::room::RoomSignal)): std's, or loom's when the
//! crate is built with `--cfg smartsock_loom` for the model checker
//! (`cargo xtask loom`).

#[cfg(not(smartsock_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(smartsock_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(smartsock_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(smartsock_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Locks `mutex`, carrying on after a panic elsewhere: no code path of the
/// send core leaves its state half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
