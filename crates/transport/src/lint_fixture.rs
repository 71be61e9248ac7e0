//! Built only by `cargo xtask ci`'s lint check (`--cfg smartsock_lint_fixture`),
//! which expects clippy to refuse it: a [`ShortLock`] guard held across an
//! await. A spin lock's guard is `Send`, so clippy's own `await_holding_lock`
//! does not see it; `clippy.toml` names its type for
//! `await_holding_invalid_type`. Should the `spin` crate move the type, that
//! entry would stop matching without any error, and this check fails instead.

use crate::sync::ShortLock;

pub(crate) async fn holds_a_short_lock_across_an_await(lock: &ShortLock<u64>) {
    let mut guard = lock.lock();
    *guard += 1;
    tokio::task::yield_now().await;
    *guard += 1;
}
