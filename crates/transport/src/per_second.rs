//! [`PerSecond`]: a connection's flood limit for one kind of frame.

use tokio::time::Instant;

use crate::event::DisconnectReason;

/// Counts frames of one kind a connection sent within a second, and
/// closes it past a limit.
pub(crate) struct PerSecond {
    limit: usize,
    what: &'static str,
    window_start: Instant,
    count: usize,
}

impl PerSecond {
    pub(crate) fn new(limit: usize, what: &'static str) -> Self {
        Self { limit, what, window_start: Instant::now(), count: 0 }
    }

    pub(crate) fn add(&mut self, count: usize) -> Result<(), DisconnectReason> {
        if count == 0 {
            return Ok(());
        }
        // The clock is read only for reads that carried such frames.
        let now = Instant::now();
        if now.duration_since(self.window_start) >= std::time::Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += count;
        if self.count > self.limit {
            return Err(DisconnectReason::Protocol(format!(
                "more than {} {} within a second",
                self.limit, self.what
            )));
        }
        Ok(())
    }
}
