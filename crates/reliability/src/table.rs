//! The at-least-once sender's table: the messages waiting for their ACKs,
//! the time buckets the driver cuts, what each peer acknowledged last and
//! how many messages it holds. [`Core`](crate::core::Core) keeps it under
//! its lock.

use std::collections::{HashMap, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;
use smartsock_transport::{MsgId, PeerId};
use tokio::time::Instant;

use crate::AtLeastOnceConfig;
use crate::pending::{PendingTable, Retired, SeqMap};

/// Maps by peer identity, touched once or twice per message: a fast hash,
/// seeded per map so that peers (who choose their identities) cannot aim
/// at its collisions; the maps hold at most one entry per peer.
pub(crate) type PeerMap<V> = HashMap<PeerId, V, foldhash::fast::RandomState>;

/// The most counters the pending ring spans (about 9 MiB of entries).
const MAX_RING_SPAN: usize = 1 << 16;

/// How many counters the pending ring spans, from the oldest pending
/// message to the newest send: twice the limit lets a message wait for its
/// ACK while as many again are sent and settled after it, before it moves
/// to the map. Capped, so that a large limit does not mean a large ring.
fn ring_span(max_in_flight: usize) -> usize {
    max_in_flight.saturating_mul(2).min(MAX_RING_SPAN)
}

/// What a peer last acknowledged.
#[derive(Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) at: Instant,
    /// The latest send order among the messages it acknowledged.
    pub(crate) newest: u64,
}

pub(crate) struct Table {
    pub(crate) next_seq: u64,
    /// Messages sent for the first time and not untracked: what
    /// [`AtLeastOnceStats::sent`](crate::AtLeastOnceStats::sent) reports.
    pub(crate) sent: u64,
    /// The next send order (see [`Pending::order`](crate::pending::Pending::order)).
    pub(crate) next_order: u64,
    pub(crate) pending: PendingTable,
    /// Sends reserved by `poll_ready` and not made yet.
    pub(crate) reserved: usize,
    /// Messages tracked by `track` with `deferred` (least-loaded routing,
    /// and callers of `try_track`) and not handed over yet (see
    /// [`Core::sent_to`](crate::core::Core::sent_to)): they count against the in-flight limit.
    pub(crate) in_send: usize,
    /// ACKs that matched no pending message while hand-overs were due: the
    /// ACK of a message whose sending thread was held up between its send
    /// and its hand-over (on a multi-thread runtime the writer it wakes can
    /// preempt it there). Keyed by counter, with the whole id and the peer
    /// it came from; never more entries than `in_send`, and emptied when no
    /// hand-over is due (what is left then matched nothing).
    pub(crate) early_acks: SeqMap<(MsgId, PeerId)>,
    /// Draws the random half of each id: what a peer sees of some ids says
    /// nothing of the others.
    pub(crate) rng: StdRng,
    /// Cuts of the counter stream: `(t, s)` says that every message below
    /// `s` not in an earlier cut was first sent no later than `t`.
    pub(crate) cuts: VecDeque<(Instant, u64)>,
    /// The counter from which first sends have not been checked yet.
    pub(crate) unchecked: u64,
    /// Resend deadlines in time order: `(deadline, seq, attempts then)`.
    pub(crate) resends: VecDeque<(Instant, u64, u32)>,
    /// The driver sleeps until a send wakes it.
    pub(crate) driver_idle: bool,
    /// The driver has handed back everything pending and ended: a request
    /// handed over now would stay here for ever.
    pub(crate) drained: bool,
    /// The driver's last cut time: the coarse "now" of ACKs.
    pub(crate) last_cut: Instant,
    pub(crate) progress: PeerMap<Progress>,
    /// Pending messages per peer they last went to (when known): the load
    /// a least-loaded route counts. Read it through
    /// [`outstanding`](Table::outstanding): the latest run of holds for
    /// one peer is counted in `recent_holds` first.
    outstanding: PeerMap<usize>,
    /// Holds not added to `outstanding` yet: a run of sends to one peer is
    /// counted here, and the map is touched when the peer changes or the
    /// counts are read (not once a message).
    recent_holds: Option<(PeerId, usize)>,
    /// Payloads of acknowledged messages, freed by the next sends or the
    /// driver's next tick.
    pub(crate) retired: Retired,
    /// The driver's list of counters to check in a tick, kept so that a
    /// tick allocates nothing under the lock. Its capacity is at most the
    /// most messages pending at once.
    pub(crate) tick_counters: Vec<u64>,
}

impl Table {
    /// An empty table for a sender of at most `max_in_flight` messages.
    pub(crate) fn new(max_in_flight: usize) -> Self {
        let ring_span = ring_span(max_in_flight);
        Self {
            next_seq: 0,
            sent: 0,
            next_order: 0,
            pending: PendingTable::new(ring_span),
            reserved: 0,
            in_send: 0,
            early_acks: SeqMap::default(),
            rng: StdRng::from_os_rng(),
            cuts: VecDeque::new(),
            unchecked: 0,
            resends: VecDeque::new(),
            driver_idle: false,
            drained: false,
            last_cut: Instant::now(),
            progress: PeerMap::default(),
            outstanding: PeerMap::default(),
            recent_holds: None,
            retired: Retired::default(),
            tick_counters: Vec::new(),
        }
    }

    /// A pending message now counts against `peer`.
    pub(crate) fn hold(&mut self, peer: PeerId) {
        match &mut self.recent_holds {
            Some((recent, count)) if *recent == peer => *count += 1,
            _ => {
                self.flush_recent_holds();
                self.recent_holds = Some((peer, 1));
            }
        }
    }

    fn flush_recent_holds(&mut self) {
        if let Some((peer, count)) = self.recent_holds.take() {
            *self.outstanding.entry(peer).or_default() += count;
        }
    }

    /// The messages pending against `peer`.
    pub(crate) fn outstanding(&mut self, peer: PeerId) -> usize {
        self.flush_recent_holds();
        self.outstanding.get(&peer).copied().unwrap_or(0)
    }

    /// A pending message no longer counts against `peer` (if it did).
    pub(crate) fn release(&mut self, peer: Option<PeerId>) {
        if let Some(peer) = peer {
            self.release_many(peer, 1);
        }
    }

    /// `n` pending messages no longer count against `peer`.
    pub(crate) fn release_many(&mut self, peer: PeerId, n: usize) {
        if n == 0 {
            return;
        }
        self.flush_recent_holds();
        if let std::collections::hash_map::Entry::Occupied(mut entry) = self.outstanding.entry(peer) {
            *entry.get_mut() = entry.get().saturating_sub(n);
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }

    /// Whether one more message may be tracked: fewer than `max_in_flight`
    /// messages pending, reserved or being handed over, and fewer than
    /// `max_in_flight_bytes` payload bytes pending.
    pub(crate) fn has_room(&self, config: &AtLeastOnceConfig) -> bool {
        self.pending.len() + self.reserved + self.in_send < config.max_in_flight
            && self.pending.bytes() < config.max_in_flight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_spans_twice_the_in_flight_limit_up_to_its_cap() {
        assert_eq!(ring_span(1), 2);
        assert_eq!(ring_span(MAX_RING_SPAN / 2 - 1), MAX_RING_SPAN - 2);
        assert_eq!(ring_span(MAX_RING_SPAN / 2), MAX_RING_SPAN);
        assert_eq!(ring_span(MAX_RING_SPAN / 2 + 1), MAX_RING_SPAN, "capped");
        assert_eq!(ring_span(usize::MAX), MAX_RING_SPAN);
    }
}
