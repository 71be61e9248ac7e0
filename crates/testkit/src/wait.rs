//! Bounded waits: every wait in a test ends, and says what it waited for.

use std::future::Future;
use std::time::Duration;

/// The bound on every wait that should succeed: generous, so that a loaded
/// machine (two cores shared by several builds) does not fail a test, and
/// reached only when something is wrong. Under paused time it is virtual
/// time and costs nothing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(what, WAIT, future).await
}

/// Awaits `future`, failing the test with `what` if it takes longer than `limit`.
pub async fn within_for<F: Future>(what: &str, limit: Duration, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` every `every` until it holds, failing the test with `what`
/// after `limit`. For conditions that have no wake-up of their own (a
/// counter read through a snapshot); prefer a real wait where there is one.
pub async fn eventually(what: &str, limit: Duration, every: Duration, mut check: impl FnMut() -> bool) {
    within_for(what, limit, async {
        while !check() {
            tokio::time::sleep(every).await;
        }
    })
    .await;
}
