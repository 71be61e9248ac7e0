//! The one routing function: which outboxes a message goes into, used alike
//! by a send and by the flusher of buffered and orphaned messages.

use std::sync::atomic::{AtomicUsize, Ordering};

use smartsock_transport::{Frame, NotQueued, PeerHandle, PeerId, PeerSnapshot};

use crate::peer_set::LoadFn;
use crate::{Destination, Message, Share, WhenFull};

/// What a caller's `sent_to` starts as; whatever it holds is read only
/// after [`Routed::ToPeer`].
pub(crate) const NO_PEER: PeerId = PeerId::from_bytes([0; 16]);

/// How a message for any one peer picks it: the policy, and what counts as
/// a peer's load beyond its outbox.
#[derive(Clone, Copy)]
pub(crate) struct Sharing<'a> {
    pub(crate) share: Share,
    pub(crate) load: Option<&'a LoadFn>,
}

/// What became of one try to route a message. The message stays the
/// caller's: the outboxes took copies of it (small frames encoded, large
/// ones sharing the payload).
pub(crate) enum Routed {
    /// In the outbox of one peer, whose identity [`route`] wrote to the
    /// caller's `sent_to`.
    ToPeer,
    /// Published: in every outbox that had room (the copies of full
    /// subscribers were dropped under [`WhenFull::Drop`] and reported).
    Published,
    /// No peer in the snapshot can ever take it: none is connected, or every
    /// one has gone.
    NoPeer,
    /// Every live peer that may take it is at its mark. Try again when an
    /// outbox has room.
    Full,
    /// The identity it is addressed to is not connected.
    UnknownPeer(PeerId),
    /// By identity: that peer is full; wait for room in its outbox.
    WaitFor(PeerHandle),
    /// Publish with [`WhenFull::Wait`]: the subscribers still to take a copy,
    /// each to be waited for (a subscriber that leaves misses it).
    CopiesWaiting(Vec<PeerHandle>),
}

/// Routes `message` to the peers of `snapshot` by its destination.
///
/// - [`Destination::AnyOne`] (and `Unresolved`): by `sharing`, the next peer
///   in turn from `cursor` that has room (full peers are skipped), or the
///   peer with room and the least load.
/// - [`Destination::Everyone`]: a copy to every peer with room; for a full
///   one, per `when_full`, the copy waits or is dropped (`on_slow_drop` is
///   told). If every live subscriber is full, nothing is dropped: the
///   message is `Full`, to be tried again.
/// - [`Destination::Peer`]: exactly that peer.
///
/// The peer a message went to, when only one ([`Routed::ToPeer`]), is
/// written to `sent_to` as a plain identity, rather than returned as an
/// `Option<PeerId>`: a copy of one made right after it was written reads
/// back its tag and half its identity in one load that straddles the stores
/// of the two (a store-forwarding stall, the costliest instruction in a
/// small send's profile). After any other outcome `sent_to` means nothing:
/// a peer tried may have been written there. Inlined into its callers, for
/// the same reason: as a call, the outcome went through memory.
#[inline(always)]
pub(crate) fn route(
    snapshot: &PeerSnapshot,
    cursor: &AtomicUsize,
    sharing: Sharing<'_>,
    message: &Message,
    sent_to: &mut PeerId,
    on_slow_drop: &mut dyn FnMut(&PeerHandle),
) -> Routed {
    let frame = &message.frame;
    match message.to {
        Destination::Peer(id) => {
            let Some(peer) = snapshot.get(id) else {
                return Routed::UnknownPeer(id);
            };
            match peer.try_send_frame(frame, false) {
                Ok(()) => {
                    *sent_to = id;
                    Routed::ToPeer
                }
                Err(NotQueued::Full) => Routed::WaitFor(peer.clone()),
                Err(NotQueued::Closed) => Routed::UnknownPeer(id),
            }
        }
        Destination::Everyone { when_full } => publish(snapshot, frame, when_full, on_slow_drop),
        Destination::AnyOne | Destination::Unresolved => match sharing.share {
            Share::LeastLoaded => least_loaded(snapshot, cursor, sharing.load, frame, sent_to),
            _ => round_robin(snapshot, cursor, frame, sent_to),
        },
    }
}

/// The peer with room and the fewest messages on its hands; among equals,
/// the first in turn from `cursor`, so that idle peers share alike.
fn least_loaded(
    snapshot: &PeerSnapshot,
    cursor: &AtomicUsize,
    load: Option<&LoadFn>,
    frame: &Frame,
    sent_to: &mut PeerId,
) -> Routed {
    let peers = snapshot.table();
    let count = peers.len();
    let turn = cursor.fetch_add(1, Ordering::Relaxed);
    let mut best: Option<(usize, usize)> = None;
    for i in in_turn(turn, count) {
        let peer = &peers[i];
        if !peer.has_room() {
            continue;
        }
        let on_hands = peer.queued() + load.map_or(0, |load| load(peer.id()));
        if best.is_none_or(|(fewest, _)| on_hands < fewest) {
            best = Some((on_hands, i));
        }
    }
    if let Some((_, i)) = best {
        // Written before the push, as round-robin does (see there).
        *sent_to = peers[i].id();
        if peers[i].try_send_frame(frame, true).is_ok() {
            return Routed::ToPeer;
        }
    }
    // Nobody has room (or everyone has gone), or the chosen one filled up
    // or left since the look: as round-robin says.
    round_robin(snapshot, cursor, frame, sent_to)
}

#[inline(always)]
fn round_robin(snapshot: &PeerSnapshot, cursor: &AtomicUsize, frame: &Frame, sent_to: &mut PeerId) -> Routed {
    let peers = snapshot.table();
    let count = peers.len();
    let mut any_live = false;
    // One relaxed counter shared by every sender: each send starts one peer
    // further on, so concurrent senders spread over the peers too. With one
    // peer (or none: a snapshot may be empty) there is nothing to spread,
    // and the count (an atomic add, a tenth of a small send's time) is
    // skipped.
    let turn = if count <= 1 { 0 } else { cursor.fetch_add(1, Ordering::Relaxed) };
    for (offset, i) in in_turn(turn, count).enumerate() {
        let peer = &peers[i];
        // Written before the push, not after it: after the call, the
        // identity's load waited on the reload of the peer's address that
        // the call had made the compiler spill, half the route's samples
        // (its share of a 16-byte sender's profile: 13.6% before, 6%
        // after). Only `ToPeer` says it was taken.
        *sent_to = peer.id();
        match peer.try_send_frame(frame, true) {
            Ok(()) => {
                if offset > 0 {
                    // Skipped full peers: the next send starts after this one.
                    cursor.store(i.wrapping_add(1), Ordering::Relaxed);
                }
                return Routed::ToPeer;
            }
            Err(NotQueued::Full) => any_live = true,
            Err(NotQueued::Closed) => {}
        }
    }
    if any_live { Routed::Full } else { Routed::NoPeer }
}

/// The indices of `count` peers in turn, from the one `turn` points at.
/// One division at most, none for one peer or none: as a division per peer
/// tried, the load of the peer's outbox waited on it (paired runs without
/// it: 16 and 64 B round-robin sends +14-23%).
#[inline(always)]
fn in_turn(turn: usize, count: usize) -> InTurn {
    InTurn { next: if count <= 1 { 0 } else { turn % count }, left: count, count }
}

/// See [`in_turn`]: a counter that wraps. (A chain of two ranges, which
/// checks which one it is in at every step, was slower in paired runs:
/// medians 0.96-0.97 at 16 and 64 B.)
struct InTurn {
    next: usize,
    left: usize,
    count: usize,
}

impl Iterator for InTurn {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let index = self.next;
        self.next += 1;
        if self.next == self.count {
            self.next = 0;
        }
        Some(index)
    }
}

fn publish(
    snapshot: &PeerSnapshot,
    frame: &Frame,
    when_full: WhenFull,
    on_slow_drop: &mut dyn FnMut(&PeerHandle),
) -> Routed {
    let mut accepted = false;
    let mut full: Vec<&PeerHandle> = Vec::new();
    for peer in snapshot.table().iter() {
        match peer.try_send_frame(frame, false) {
            Ok(()) => accepted = true,
            Err(NotQueued::Full) => full.push(peer),
            Err(NotQueued::Closed) => {}
        }
    }
    if full.is_empty() {
        return if accepted { Routed::Published } else { Routed::NoPeer };
    }
    match when_full {
        WhenFull::Wait => Routed::CopiesWaiting(full.into_iter().cloned().collect()),
        // Every live subscriber is full: wait, as a send waits for readiness,
        // instead of dropping the message for everyone.
        WhenFull::Drop if !accepted => Routed::Full,
        WhenFull::Drop => {
            for peer in full {
                on_slow_drop(peer);
            }
            Routed::Published
        }
    }
}

#[cfg(test)]
mod tests {
    use smartsock_transport::{Transport, TransportConfig};

    use super::*;

    /// A snapshot read after another that saw peers may hold none (the
    /// flusher looks, then routes): routing to any one of no peers finds
    /// none, by either policy, and must not divide by their count.
    #[tokio::test]
    async fn any_one_of_no_peers_is_no_peer_by_either_policy() {
        let parts = Transport::new(TransportConfig::default()).expect("a transport");
        let message = Message::new("nobody");
        for share in [Share::RoundRobin, Share::LeastLoaded] {
            // A cursor about to wrap, as after a long life.
            let cursor = AtomicUsize::new(usize::MAX);
            let mut sent_to = NO_PEER;
            let routed = parts.transport.with_peers(|snapshot| {
                assert!(snapshot.table().is_empty());
                let sharing = Sharing { share, load: None };
                route(snapshot, &cursor, sharing, &message, &mut sent_to, &mut |_| {})
            });
            assert!(matches!(routed, Routed::NoPeer), "{share:?}");
            // With no peer to try, none was written.
            assert_eq!(sent_to, NO_PEER);
        }
    }

    /// Every peer once, in turn from the one the turn points at, the
    /// turn taken modulo the count (up to a turn about to wrap).
    #[test]
    fn peers_come_in_turn_from_the_one_the_turn_points_at() {
        assert_eq!(in_turn(7, 0).count(), 0);
        assert_eq!(in_turn(7, 1).collect::<Vec<_>>(), [0]);
        assert_eq!(in_turn(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(in_turn(4, 3).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(in_turn(5, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(in_turn(usize::MAX, 4).collect::<Vec<_>>(), [3, 0, 1, 2]);
    }
}
