//! The lock of this crate's per-message state: the sender's table and the
//! receiver's duplicate window.

/// A spin lock whose waiters yield the CPU between tries, as the
/// transport's queues are (its `ShortLock`): releasing it is a plain store,
/// where std's mutex spends an atomic exchange looking for sleepers, on
/// every message that takes it. Only for holds that are short and never
/// wait; each user lists its holds. Not poisoned by a panic: no hold leaves
/// its state half-changed.
pub(crate) type ShortLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
/// What [`ShortLock::lock`] returns.
pub(crate) type ShortLockGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T, spin::relax::Yield>;
