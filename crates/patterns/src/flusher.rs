//! The peer set's background task: flushes the no-peer buffer whenever
//! peers are up, and takes back the messages of disconnected peers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use smartsock_transport::{OrphanReceiver, Orphans, Outgoing, PeerWatch};
use tracing::debug;

use crate::peer_set::Shared;
use crate::routing::{NO_PEER, Routed, route};
use crate::{Destination, Message};

pub(crate) async fn flusher(shared: Arc<Shared>, mut table: PeerWatch, mut orphans: OrphanReceiver) {
    let mut had_peers = false;
    loop {
        let has_peers = shared.transport.with_peers(|peers| !peers.is_empty());
        if has_peers && !had_peers && !shared.settle().is_zero() && !shared.backlog().is_idle() {
            // The first peer is up with messages waiting: give the others a
            // moment to come, so that they share the backlog.
            tokio::select! {
                () = tokio::time::sleep(shared.settle()) => {}
                () = shared.transport.closed() => {}
            }
        }
        had_peers = has_peers;
        flush(&shared).await;
        tokio::select! {
            changed = table.changed() => if changed.is_err() { return },
            Some(Orphans { peer, frames }) = orphans.recv() => {
                debug!(%peer, count = frames.len(), "routing a disconnected peer's messages again");
                shared.stats.rerouted.fetch_add(frames.len() as u64, Ordering::Relaxed);
                let mut backlog = shared.backlog();
                // They were sent before anything still buffered: they go first.
                for item in frames.into_iter().rev() {
                    backlog.push_front(Message { to: Destination::AnyOne, frame: item.frame });
                }
                shared.backlog_active.store(true, Ordering::Release);
            }
            () = shared.flush_wanted.notified() => {}
            () = shared.transport.closed() => {
                // Senders waiting for buffer room must learn that it is over.
                shared.backlog().wake_waiters();
                return;
            }
        }
    }
}

/// Delivers buffered messages, in order, while peers are up.
async fn flush(shared: &Shared) {
    let mut room = shared.transport.room_waiter();
    loop {
        // A flush can go on for long while peers keep up: let the runtime
        // run other tasks (the connections among them) in between.
        tokio::task::consume_budget().await;
        let message = {
            let mut backlog = shared.backlog();
            if shared.transport.with_peers(|peers| peers.is_empty()) {
                return;
            }
            match backlog.pop_front() {
                Some(message) => {
                    backlog.in_flight = true;
                    message
                }
                None => {
                    backlog.in_flight = false;
                    shared.backlog_active.store(false, Ordering::Release);
                    drop(backlog);
                    shared.drained.notify_waiters();
                    return;
                }
            }
        };
        let routed = shared.transport.with_peers(|peers| {
            let mut sent_to = NO_PEER;
            route(peers, &shared.cursor, shared.share(), &message, &mut sent_to, &mut |peer| {
                shared.count_slow_drop(peer)
            })
        });
        let back = match routed {
            Routed::ToPeer | Routed::Published => None,
            Routed::CopiesWaiting(subscribers) => {
                for peer in subscribers {
                    // A subscriber that leaves while we wait simply misses it.
                    let _ = peer.send(Outgoing::to_this_peer(message.frame.clone())).await;
                }
                None
            }
            // Every outbox is full: wait for room in any (a stalled peer must
            // not hold the rest back) or a change of peers, then try again.
            Routed::Full => {
                room.until(|| shared.any_room_or_change()).await;
                Some(message)
            }
            Routed::NoPeer => {
                // Every listed peer is on its way out: wait for the table to
                // change (the flusher's loop does) instead of trying again.
                let mut backlog = shared.backlog();
                backlog.in_flight = false;
                backlog.push_front(message);
                return;
            }
            // Buffered messages are never addressed to one peer; were one
            // to be, it is handled as a send to that peer would be.
            Routed::UnknownPeer(peer) => {
                debug!(%peer, "dropping a buffered message for a peer that has gone");
                None
            }
            Routed::WaitFor(peer) => {
                let _ = peer.send(Outgoing::to_this_peer(message.frame)).await;
                None
            }
        };
        let mut backlog = shared.backlog();
        backlog.in_flight = false;
        if let Some(message) = back {
            // It stays first in line, and goes with the next try.
            backlog.push_front(message);
        }
    }
}
