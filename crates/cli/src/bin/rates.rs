//! `smartsock recv --stats`: receive rates once a second on stderr, read
//! from the socket's own counters ([`Socket::stats`]), so they count what
//! came off the network whether or not it has been printed yet.

use std::time::Duration;

use smartsock::{Socket, SocketStats};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::note;

/// Megabytes (10^6 bytes, as network rates are given) per second.
const MB: f64 = 1e6;

/// The figures of the last report, to take differences from.
pub(crate) struct Rates {
    started: Instant,
    at: Instant,
    messages: u64,
    bytes: u64,
}

impl Rates {
    pub(crate) fn new(now: Instant) -> Self {
        Self { started: now, at: now, messages: 0, bytes: 0 }
    }

    /// The line for the interval since the last one.
    pub(crate) fn line(&mut self, stats: &SocketStats, now: Instant) -> String {
        let seconds = now.duration_since(self.at).as_secs_f64().max(f64::EPSILON);
        let messages = stats.totals.messages_in - self.messages;
        let bytes = stats.totals.bytes_in - self.bytes;
        (self.at, self.messages, self.bytes) = (now, stats.totals.messages_in, stats.totals.bytes_in);
        let peers = stats.peers.len();
        format!(
            "stats: {:.0} msg/s, {:.2} MB/s, {peers} peer{}",
            messages as f64 / seconds,
            bytes as f64 / MB / seconds,
            if peers == 1 { "" } else { "s" },
        )
    }

    /// The whole run's line.
    pub(crate) fn summary(&self, stats: &SocketStats, now: Instant) -> String {
        let seconds = now.duration_since(self.started).as_secs_f64().max(f64::EPSILON);
        let (messages, bytes) = (stats.totals.messages_in, stats.totals.bytes_in);
        format!(
            "stats: received {messages} messages, {:.2} MB in {seconds:.1} s: {:.0} msg/s, {:.2} MB/s",
            bytes as f64 / MB,
            messages as f64 / seconds,
            bytes as f64 / MB / seconds,
        )
    }
}

/// Prints a line on stderr every second until aborted; the summary is the
/// caller's to print (with [`Rates::summary`]) when the run ends.
pub(crate) fn report_every_second(socket: Socket, started: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rates = Rates::new(started);
        let mut ticks = tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = ticks.tick().await;
            note(rates.line(&socket.stats(), now));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rates_are_differences_over_the_interval() -> Result<(), smartsock::Error> {
        let socket = Socket::new()?;
        let start = Instant::now();
        let mut rates = Rates::new(start);
        let mut stats = socket.stats();
        stats.totals.messages_in = 3_000;
        stats.totals.bytes_in = 1_500_000;
        let line = rates.line(&stats, start + Duration::from_secs(2));
        assert_eq!(line, "stats: 1500 msg/s, 0.75 MB/s, 0 peers");
        stats.totals.messages_in = 3_500;
        stats.totals.bytes_in = 2_000_000;
        let line = rates.line(&stats, start + Duration::from_millis(2500));
        assert_eq!(line, "stats: 1000 msg/s, 1.00 MB/s, 0 peers");
        let summary = rates.summary(&stats, start + Duration::from_secs(4));
        assert_eq!(summary, "stats: received 3500 messages, 2.00 MB in 4.0 s: 875 msg/s, 0.50 MB/s");
        Ok(())
    }
}
