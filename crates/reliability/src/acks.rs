//! ACKs from the connections: the at-least-once sender as their
//! [`AckSink`], one lock per batch (a read's worth).

use std::sync::atomic::Ordering;

use smartsock_transport::{AckSink, MsgId, PeerId};

use crate::core::Core;
use crate::table::Progress;

/// Peers whose progress is remembered before the oldest are forgotten.
const MAX_PEERS_TRACKED: usize = 4096;

impl AckSink for Core {
    fn acknowledged(&self, peer: PeerId, ids: &[MsgId]) -> usize {
        let mut unknown = 0;
        let mut acked = 0u64;
        let mut newest = None;
        // Every ACK here is from `peer`: its count is settled once.
        let mut released = 0;
        // Payloads not kept for the senders to free: freed after the lock.
        let mut to_free = Vec::new();
        let mut guard = self.table();
        let table = &mut *guard;
        for &id in ids {
            // An ACK counts only with the message's whole id, and only from
            // the peer the message last went to (when the route said which).
            let seq = Self::seq_of(id);
            if let Some(pending) = table.pending.get(seq) {
                if pending.id() == Some(id) && pending.peer.is_none_or(|to| to == peer) {
                    newest = newest.max(Some(pending.order));
                    released += usize::from(pending.peer.is_some());
                    table.pending.discard_in_run(seq, &mut table.retired, &mut to_free);
                    acked += 1;
                    continue;
                }
            } else if seq < table.next_seq && table.early_acks.len() < table.in_send {
                // Perhaps the ACK of a message sent and not handed over
                // yet: kept for its hand-over, which decides.
                table.early_acks.insert(seq, (id, peer));
                continue;
            }
            unknown += 1;
        }
        table.pending.end_run();
        table.release_many(peer, released);
        if let Some(newest) = newest {
            if table.progress.len() >= MAX_PEERS_TRACKED && !table.progress.contains_key(&peer) {
                table.progress.clear();
            }
            let at = table.last_cut;
            let entry = table.progress.entry(peer).or_insert(Progress { at, newest });
            entry.at = at;
            entry.newest = entry.newest.max(newest);
        }
        let empty = table.pending.is_empty();
        drop(guard);
        drop(to_free);
        if acked > 0 {
            self.after_acks(acked, empty);
        }
        if unknown > 0 {
            self.stats.unknown_acks.fetch_add(unknown as u64, Ordering::Relaxed);
        }
        unknown
    }
}
