//! [`Admission`]: who may hold a pending handshake on a bind end.
//!
//! Accepting never waits on strangers. Pending handshakes are bounded in
//! total ([`TransportConfig::max_handshakes`](crate::TransportConfig::max_handshakes)):
//! at the bound the oldest is shed, so connections that never finish their
//! handshake cannot keep a legitimate peer out. Each remote address may hold
//! at most [`TransportConfig::max_handshakes_per_address`](crate::TransportConfig::max_handshakes_per_address)
//! of them; more are closed at once.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::event::RefusedReason;

pub(crate) struct Admission {
    state: Mutex<VecDeque<Entry>>,
    max_pending: usize,
    max_per_address: usize,
    next_id: std::sync::atomic::AtomicU64,
}

struct Entry {
    id: u64,
    source: Option<IpAddr>,
    shed: CancellationToken,
}

/// One pending handshake's place; dropping it (the handshake ended, one way
/// or another) gives the place back.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    shed: CancellationToken,
}

impl Ticket {
    /// Completes if this handshake is shed to make room for a newer one.
    pub(crate) async fn shed(&self) {
        self.shed.cancelled().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pending = self.admission.lock();
        if let Some(at) = pending.iter().position(|entry| entry.id == self.id) {
            pending.remove(at);
        }
    }
}

/// The address a connection's remote label names, for per-address limits:
/// the IP of a TCP peer; none for Unix sockets, in-process pipes and
/// attached streams (one local trust domain).
pub(crate) fn source_of(remote: &str) -> Option<IpAddr> {
    remote.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

impl Admission {
    pub(crate) fn new(max_pending: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(VecDeque::new()),
            max_pending,
            max_per_address,
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        // No code path leaves the queue half-changed on a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new handshake from `remote`, shedding the oldest
    /// pending one if every place is taken; refused if `remote`'s address
    /// holds its share already.
    pub(crate) fn admit(self: &Arc<Self>, remote: &str) -> Result<Ticket, RefusedReason> {
        let source = source_of(remote);
        let mut pending = self.lock();
        if let Some(ip) = source {
            if pending.iter().filter(|entry| entry.source == Some(ip)).count() >= self.max_per_address {
                return Err(RefusedReason::TooManyFromAddress);
            }
        }
        if pending.len() >= self.max_pending {
            if let Some(oldest) = pending.pop_front() {
                oldest.shed.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shed = CancellationToken::new();
        pending.push_back(Entry { id, source, shed: shed.clone() });
        Ok(Ticket { admission: self.clone(), id, shed })
    }

    /// Handshakes pending now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_bound_the_oldest_is_shed_and_places_come_back() {
        let admission = Admission::new(2, 8);
        let first = admission.admit("10.0.0.1:1").unwrap();
        let second = admission.admit("10.0.0.2:1").unwrap();
        assert!(!first.shed.is_cancelled());
        let third = admission.admit("10.0.0.3:1").unwrap();
        assert!(first.shed.is_cancelled(), "the oldest is shed");
        assert!(!second.shed.is_cancelled());
        assert_eq!(admission.pending(), 2);
        drop((first, second, third));
        assert_eq!(admission.pending(), 0);
    }

    #[test]
    fn one_address_gets_its_share_exactly() {
        let admission = Admission::new(64, 2);
        let a = admission.admit("10.0.0.1:1").unwrap();
        let b = admission.admit("10.0.0.1:2").unwrap();
        assert!(matches!(admission.admit("10.0.0.1:3"), Err(RefusedReason::TooManyFromAddress)));
        // Other addresses, and local streams, are not affected.
        let _c = admission.admit("10.0.0.2:1").unwrap();
        let _d = admission.admit("unix:///tmp/s").unwrap();
        drop(a);
        let _e = admission.admit("10.0.0.1:4").unwrap();
        drop(b);
    }
}
