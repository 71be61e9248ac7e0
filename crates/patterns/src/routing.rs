//! The one routing function: which outboxes a message goes into, used alike
//! by a send and by the flusher of buffered and orphaned messages.

use std::sync::atomic::{AtomicUsize, Ordering};

use smartsock_transport::{Outgoing, PeerHandle, PeerId, PeerSnapshot, TrySendError};

use crate::peer_set::LoadFn;
use crate::{Destination, Message, Share, WhenFull};

/// How a message for any one peer picks it: the policy, and what counts as
/// a peer's load beyond its outbox.
#[derive(Clone, Copy)]
pub(crate) struct Sharing<'a> {
    pub(crate) share: Share,
    pub(crate) load: Option<&'a LoadFn>,
}

/// What became of one try to route a message.
pub(crate) enum Routed {
    /// In an outbox (publish: in every outbox that had room; the copies of
    /// full subscribers were dropped under [`WhenFull::Drop`] and reported),
    /// of this peer when there was only one.
    Done(Option<PeerId>),
    /// No peer in the snapshot can ever take it: none is connected, or every
    /// one has gone.
    NoPeer(Message),
    /// Every live peer that may take it is at its mark. Try again when an
    /// outbox has room.
    Full(Message),
    /// The identity it is addressed to is not connected.
    UnknownPeer(PeerId, Message),
    /// By identity: that peer is full; wait for room in its outbox.
    WaitFor(PeerHandle, Outgoing),
    /// Publish with [`WhenFull::Wait`]: the copies still to queue, each
    /// waiting for its subscriber's room (a subscriber that leaves misses it).
    CopiesWaiting(Vec<(PeerHandle, Outgoing)>),
}

/// Routes `message` to the peers of `snapshot` by its destination.
///
/// - [`Destination::AnyOne`] (and `Unresolved`): by `sharing`, the next peer
///   in turn from `cursor` that has room (full peers are skipped), or the
///   peer with room and the least load.
/// - [`Destination::Everyone`]: a copy (sharing the payload) to every peer
///   with room; for a full one, per `when_full`, the copy waits or is dropped
///   (`on_slow_drop` is told). If every live subscriber is full, nothing is
///   dropped: the message is `Full`, to be tried again.
/// - [`Destination::Peer`]: exactly that peer.
pub(crate) fn route(
    snapshot: &PeerSnapshot,
    cursor: &AtomicUsize,
    sharing: Sharing<'_>,
    message: Message,
    on_slow_drop: &mut dyn FnMut(&PeerHandle),
) -> Routed {
    match message.to {
        Destination::Peer(id) => {
            let Some(peer) = snapshot.get(id) else {
                return Routed::UnknownPeer(id, message);
            };
            match peer.try_send(Outgoing::to_this_peer(message.frame)) {
                Ok(()) => Routed::Done(Some(id)),
                Err(TrySendError::Full(item)) => Routed::WaitFor(peer.clone(), item),
                Err(e) => Routed::UnknownPeer(id, Message { to: message.to, frame: e.into_inner().frame }),
            }
        }
        Destination::Everyone { when_full } => publish(snapshot, message, when_full, on_slow_drop),
        Destination::AnyOne | Destination::Unresolved => match sharing.share {
            Share::LeastLoaded => least_loaded(snapshot, cursor, sharing.load, message),
            _ => round_robin(snapshot, cursor, message),
        },
    }
}

/// The peer with room and the fewest messages on its hands; among equals,
/// the first in turn from `cursor`, so that idle peers share alike.
fn least_loaded(
    snapshot: &PeerSnapshot,
    cursor: &AtomicUsize,
    load: Option<&LoadFn>,
    message: Message,
) -> Routed {
    let peers = snapshot.table();
    let count = peers.len();
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    let mut best: Option<(usize, usize)> = None;
    for offset in 0..count {
        let i = start.wrapping_add(offset) % count;
        let peer = &peers[i];
        if !peer.has_room() {
            continue;
        }
        let on_hands = peer.queued() + load.map_or(0, |load| load(peer.id()));
        if best.is_none_or(|(fewest, _)| on_hands < fewest) {
            best = Some((on_hands, i));
        }
    }
    let Some((_, i)) = best else {
        // Nobody has room (or everyone has gone): as round-robin says.
        return round_robin(snapshot, cursor, message);
    };
    match peers[i].try_send(Outgoing::to_any_peer(message.frame)) {
        Ok(()) => Routed::Done(Some(peers[i].id())),
        // It filled up or left since the look: any peer with room will do.
        Err(e) => {
            round_robin(snapshot, cursor, Message { to: Destination::AnyOne, frame: e.into_inner().frame })
        }
    }
}

fn round_robin(snapshot: &PeerSnapshot, cursor: &AtomicUsize, message: Message) -> Routed {
    let peers = snapshot.table();
    let count = peers.len();
    let mut item = Outgoing::to_any_peer(message.frame);
    let mut any_live = false;
    // One relaxed counter shared by every sender: each send starts one peer
    // further on, so concurrent senders spread over the peers too.
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    for offset in 0..count {
        let i = start.wrapping_add(offset) % count;
        match peers[i].try_send(item) {
            Ok(()) => {
                if offset > 0 {
                    // Skipped full peers: the next send starts after this one.
                    cursor.store(i.wrapping_add(1), Ordering::Relaxed);
                }
                return Routed::Done(Some(peers[i].id()));
            }
            Err(TrySendError::Full(back)) => {
                any_live = true;
                item = back;
            }
            Err(e) => item = e.into_inner(),
        }
    }
    let message = Message { to: Destination::AnyOne, frame: item.frame };
    if any_live { Routed::Full(message) } else { Routed::NoPeer(message) }
}

fn publish(
    snapshot: &PeerSnapshot,
    message: Message,
    when_full: WhenFull,
    on_slow_drop: &mut dyn FnMut(&PeerHandle),
) -> Routed {
    let mut accepted = false;
    let mut full: Vec<&PeerHandle> = Vec::new();
    for peer in snapshot.table().iter() {
        match peer.try_send(Outgoing::to_this_peer(message.frame.clone())) {
            Ok(()) => accepted = true,
            Err(TrySendError::Full(_)) => full.push(peer),
            Err(_) => {}
        }
    }
    if full.is_empty() {
        return if accepted { Routed::Done(None) } else { Routed::NoPeer(message) };
    }
    match when_full {
        WhenFull::Wait => Routed::CopiesWaiting(
            full.into_iter()
                .map(|peer| (peer.clone(), Outgoing::to_this_peer(message.frame.clone())))
                .collect(),
        ),
        // Every live subscriber is full: wait, as a send waits for readiness,
        // instead of dropping the message for everyone.
        WhenFull::Drop if !accepted => Routed::Full(message),
        WhenFull::Drop => {
            for peer in full {
                on_slow_drop(peer);
            }
            Routed::Done(None)
        }
    }
}
