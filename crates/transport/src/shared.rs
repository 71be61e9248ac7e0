//! [`Shared`]: the state of one transport, shared by its handle and every
//! task (accept and connect loops, connections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use smartsock_framing::{MsgId, PeerId};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::TransportConfig;
use crate::admission::{Admission, source_of};
use crate::event::{Event, RefusedReason};
use crate::inbound::Inbound;
use crate::peer::{Orphans, PeerHandle, PeerSnapshot, PeerTable, SharedSink};
use crate::peer_info::CertificateTable;
use crate::room::RoomSignal;
use crate::snapshot::Snapshots;
use crate::stats::TransportCounters;
use crate::watch::EventHub;

/// State shared by the handle and every task of one transport.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) cancel: CancellationToken,
    /// Mirrors `cancel` for the hot path: senders ask "closed?" per message,
    /// and `CancellationToken::is_cancelled` takes a lock.
    pub(crate) closed: Arc<AtomicBool>,
    pub(crate) tracker: TaskTracker,
    pub(crate) runtime: Handle,
    pub(crate) peers: Mutex<Vec<PeerHandle>>,
    pub(crate) table: watch::Sender<PeerTable>,
    /// The same peers, for senders: read without a lock on every send.
    pub(crate) snapshot: Snapshots,
    pub(crate) inbound: Inbound,
    pub(crate) acks: mpsc::Sender<(PeerId, MsgId)>,
    pub(crate) ack_sink: SharedSink,
    pub(crate) orphans: mpsc::Sender<Orphans>,
    pub(crate) events: EventHub,
    pub(crate) admission: Arc<Admission>,
    /// Keeps refusals from flooding the log.
    pub(crate) refusal_log: LogLimiter,
    pub(crate) local_addrs: Mutex<Vec<SocketAddr>>,
    /// Woken whenever an outbox may have room: a writer took frames out of
    /// one, or the peers changed.
    pub(crate) room: Arc<RoomSignal>,
    /// Messages that connections closed by [`Transport::close`](crate::Transport::close)
    /// could not confirm as read by their peer.
    pub(crate) unconfirmed: AtomicU64,
    /// Verified TLS certificates of live connections (see `peer_info`).
    pub(crate) certificates: Arc<CertificateTable>,
    /// Totals, refusals and departed peers' figures.
    pub(crate) stats: TransportCounters,
}

impl Shared {
    pub(crate) fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    /// Adds a peer that completed its handshake, or says why it may not join.
    pub(crate) fn register(&self, handle: &PeerHandle) -> Result<(), RefusedReason> {
        if handle.id == self.config.identity {
            return Err(RefusedReason::OwnIdentity);
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.iter().any(|p| p.id == handle.id) {
            return Err(RefusedReason::DuplicateIdentity(handle.id));
        }
        if peers.len() >= self.config.max_peers {
            return Err(RefusedReason::TooManyPeers);
        }
        if let Some(ip) = source_of(&handle.addr) {
            let from_there = peers.iter().filter(|p| source_of(&p.addr) == Some(ip)).count();
            if from_there >= self.config.max_peers_per_address {
                return Err(RefusedReason::TooManyFromAddress);
            }
        }
        peers.push(handle.clone());
        self.publish(&peers);
        Ok(())
    }

    pub(crate) fn unregister(&self, handle: &PeerHandle) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let before = peers.len();
        peers.retain(|p| !p.same_connection(handle));
        let was_up = peers.len() < before;
        self.publish(&peers);
        drop(peers);
        if was_up {
            self.stats.departed(handle.counters.clone());
        }
    }

    /// Publishes a change of peers (the caller holds the peers' lock, so
    /// that changes are published in the order they were made).
    fn publish(&self, peers: &[PeerHandle]) {
        let table: PeerTable = peers.into();
        self.snapshot.store(PeerSnapshot::new(table.clone()));
        self.table.send_replace(table);
        self.room.notify();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last task and handle are gone: receivers get what is left, then the end.
        self.inbound.close();
    }
}

/// Lets a repeated log line through at most once a second.
#[derive(Default)]
pub(crate) struct LogLimiter {
    state: Mutex<Option<(std::time::Instant, u64)>>,
}

impl LogLimiter {
    /// `Some(n)` if the line may be logged now (`n` lines were held back
    /// since the last one), `None` if it is to be held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(std::time::Instant::now())
    }

    /// [`allow`](LogLimiter::allow) at the time `now`.
    fn allow_at(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            Some((last, held)) if now.duration_since(*last) < std::time::Duration::from_secs(1) => {
                *held += 1;
                None
            }
            slot => {
                let held = slot.map_or(0, |(_, held)| held);
                *slot = Some((now, 0));
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::LogLimiter;

    #[test]
    fn a_storm_is_one_line_a_second_with_the_count_held_back() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        assert_eq!(limiter.allow_at(ms(0)), Some(0));
        // 10,000 more within the first second: none logged.
        for i in 0..10_000 {
            assert_eq!(limiter.allow_at(ms(i / 11)), None);
        }
        // The first after a second is logged, saying how many were held back.
        assert_eq!(limiter.allow_at(ms(1_000)), Some(10_000));
        assert_eq!(limiter.allow_at(ms(1_500)), None);
        assert_eq!(limiter.allow_at(ms(1_999)), None);
        assert_eq!(limiter.allow_at(ms(2_000)), Some(2));
        // After a quiet spell, the next line goes at once, with nothing held.
        assert_eq!(limiter.allow_at(ms(60_000)), Some(0));
    }

    #[test]
    fn a_storm_of_any_length_logs_at_most_one_line_per_second() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        // 15 s of refusals every 100 µs (150,000; the issue saw 130,000 lines).
        let logged = (0..150_000u64)
            .filter(|i| limiter.allow_at(start + Duration::from_micros(i * 100)).is_some())
            .count();
        assert_eq!(logged, 15);
    }
}
