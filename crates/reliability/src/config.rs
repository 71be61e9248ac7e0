//! [`AtLeastOnceConfig`]: the sender's settings, with their defaults.

use std::time::Duration;

/// Default [`AtLeastOnceConfig::max_in_flight_bytes`]: 64 MiB.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;
/// Default [`AtLeastOnceConfig::undelivered_bytes`]: 64 MiB.
pub const DEFAULT_UNDELIVERED_BYTES: usize = 64 * 1024 * 1024;

/// Settings of [`AtLeastOnce`](crate::AtLeastOnce).
///
/// ```
/// use std::time::Duration;
/// use smartsock_reliability::AtLeastOnceConfig;
///
/// let mut config = AtLeastOnceConfig::default();
/// config.resend_timeout = Duration::from_secs(1);
/// config.max_attempts = 3;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AtLeastOnceConfig {
    /// Time to wait for an ACK before sending again. Default: 5 s (the protocol's).
    pub resend_timeout: Duration,
    /// Sends of one message at most, the first included. Default: 6. A
    /// resend by identity that finds its peer away is not counted (the
    /// message waits for the peer, bounded by `give_up_after`).
    pub max_attempts: u32,
    /// Time after the first send past which a message is given up even with
    /// attempts left. Default: 60 s.
    pub give_up_after: Duration,
    /// Messages sent and not yet acknowledged, at most. At the limit the
    /// service is not ready: a send waits for an ACK (or a give-up). Default: 4096.
    pub max_in_flight: usize,
    /// A soft mark on the payload bytes of the messages sent and not yet
    /// acknowledged: a send is taken while fewer bytes than this are
    /// pending, and then whole, so a message larger than the mark still
    /// goes once enough of the ones before it are acknowledged, rather
    /// than never. At the mark, as at [`max_in_flight`](Self::max_in_flight),
    /// the service is not ready and a send waits. Each sender that took
    /// its place before the mark was reached (a ready service, a send
    /// being handed over) may pass it by one message. The pending table
    /// holds each payload until its ACK (to send it again), so this bounds
    /// the memory that large messages keep, as counted by their payloads'
    /// lengths (a payload sliced from a larger buffer keeps all of that
    /// buffer alive). Default: 64 MiB.
    pub max_in_flight_bytes: usize,
    /// Given-up messages kept for the [`UndeliveredReceiver`](crate::UndeliveredReceiver).
    /// When full, further give-ups are counted and reported as events but
    /// not kept. Default: 1024.
    pub undelivered_capacity: usize,
    /// Payload bytes of the given-up messages kept for the
    /// [`UndeliveredReceiver`](crate::UndeliveredReceiver): a message is
    /// kept while fewer bytes than this are, and then whole (so one larger
    /// than the mark is kept when nothing else is). Past it, as past
    /// [`undelivered_capacity`](Self::undelivered_capacity), give-ups are
    /// counted and reported as events but not kept. Default: 64 MiB.
    pub undelivered_bytes: usize,
}

impl Default for AtLeastOnceConfig {
    fn default() -> Self {
        Self {
            resend_timeout: Duration::from_secs(5),
            max_attempts: 6,
            give_up_after: Duration::from_secs(60),
            max_in_flight: 4096,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            undelivered_capacity: 1024,
            undelivered_bytes: DEFAULT_UNDELIVERED_BYTES,
        }
    }
}

impl AtLeastOnceConfig {
    /// Checks every setting, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.resend_timeout.is_zero() {
            return Err("resend_timeout must be longer than zero".into());
        }
        let longest = smartsock_transport::MAX_DURATION;
        if self.resend_timeout > longest || self.give_up_after > longest {
            return Err(format!(
                "resend_timeout and give_up_after must be at most {} days",
                longest.as_secs() / 86_400
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.give_up_after.is_zero() {
            return Err("give_up_after must be longer than zero".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(format!(
                "max_in_flight must be from 1 to {} (got {})",
                tokio::sync::Semaphore::MAX_PERMITS,
                self.max_in_flight
            ));
        }
        if self.max_in_flight_bytes == 0 {
            return Err("max_in_flight_bytes must be at least 1".into());
        }
        if self.undelivered_capacity == 0 {
            return Err("undelivered_capacity must be at least 1".into());
        }
        if self.undelivered_bytes == 0 {
            return Err("undelivered_bytes must be at least 1".into());
        }
        Ok(())
    }
}
