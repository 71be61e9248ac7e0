//! [`PeerSet`]: puts messages in the peers' outboxes, through `&self`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use smartsock_transport::{
    DropReason, Event, MsgId, OrphanReceiver, Outgoing, PeerHandle, PeerId, RoomWaiter, Transport,
};
use tokio::sync::Notify;

use crate::backlog::Backlog;
use crate::flusher::flusher;
use crate::future::ResponseFuture;
use crate::routing::{NO_PEER, Routed, route};
use crate::{Destination, Message, SendError, SendErrorKind, WhenFull};

/// Settings of a [`PeerSet`]'s no-peer buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerSetConfig {
    /// Messages held while no peer is connected, at most (the high-water
    /// mark in messages). Default: 1024.
    pub buffer_capacity: usize,
    /// Payload bytes held while no peer is connected: a message is taken
    /// while the buffer holds fewer bytes than this (so one message may pass
    /// the mark; none is taken after). Default: 64 MiB.
    pub buffer_bytes: usize,
    /// At the mark, wait for room ([`WhenFull::Wait`], the default) or fail
    /// at once and hand the message back ([`WhenFull::Drop`]).
    pub buffer_when_full: WhenFull,
    /// How a message for any one peer ([`Destination::AnyOne`]) picks it.
    /// Default: [`Share::RoundRobin`].
    pub share: Share,
    /// When the first peer connects while messages are buffered, wait this
    /// long before flushing them, so that the peers that connect meanwhile
    /// get their share instead of the first taking all. Default: zero.
    pub settle: std::time::Duration,
}

impl Default for PeerSetConfig {
    fn default() -> Self {
        Self {
            buffer_capacity: 1024,
            buffer_bytes: 64 * 1024 * 1024,
            buffer_when_full: WhenFull::Wait,
            share: Share::RoundRobin,
            settle: std::time::Duration::ZERO,
        }
    }
}

/// How a message for any one peer picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Share {
    /// The next peer in turn with room in its outbox. The default.
    #[default]
    RoundRobin,
    /// The peer with room that has the fewest messages on its hands: queued
    /// in its outbox, plus those the load hook reports (under at-least-once,
    /// sent and not yet acknowledged; see [`PeerSet::set_load`]). Peers that
    /// work faster take more. Ties go in turn.
    LeastLoaded,
}

/// Reports how many messages a peer has on its hands beyond its outbox.
pub type LoadFn = dyn Fn(PeerId) -> usize + Send + Sync;

/// Counters of what the peer set dropped or moved; read them with [`PeerSet::stats`].
#[derive(Debug, Default)]
pub struct PeerSetStats {
    slow_subscriber_drops: AtomicU64,
    pub(crate) rerouted: AtomicU64,
    drops_by_peer: Mutex<HashMap<PeerId, u64>>,
}

impl PeerSetStats {
    /// Published messages dropped because a subscriber's outbox was full.
    pub fn slow_subscriber_drops(&self) -> u64 {
        self.slow_subscriber_drops.load(Ordering::Relaxed)
    }

    /// Of those, the ones dropped for `peer` (kept for at least the
    /// connected peers; others may be forgotten past 4096 identities).
    pub fn slow_subscriber_drops_for(&self, peer: PeerId) -> u64 {
        lock(&self.drops_by_peer).get(&peer).copied().unwrap_or(0)
    }

    /// Messages taken back from a disconnected peer's outbox and routed again.
    pub fn rerouted(&self) -> u64 {
        self.rerouted.load(Ordering::Relaxed)
    }

    fn count_slow_drop(&self, peer: PeerId, transport: &Transport) {
        self.slow_subscriber_drops.fetch_add(1, Ordering::Relaxed);
        let mut by_peer = lock(&self.drops_by_peer);
        if by_peer.len() >= MAX_PEERS_COUNTED && !by_peer.contains_key(&peer) {
            // Subscribers come and go with new identities: keep only those
            // still connected, so the map stays bounded.
            transport.with_peers(|connected| by_peer.retain(|id, _| connected.get(*id).is_some()));
        }
        *by_peer.entry(peer).or_default() += 1;
    }
}

/// Identities whose slow-subscriber drops are counted one by one before
/// those of disconnected peers are forgotten.
const MAX_PEERS_COUNTED: usize = 4096;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves the state half-changed on a panic: carry on.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by every clone of a peer set and its flusher.
pub(crate) struct Shared {
    pub(crate) transport: Transport,
    config: PeerSetConfig,
    backlog: Mutex<Backlog>,
    /// Mirrors "the backlog is not idle", so the hot path skips the lock.
    pub(crate) backlog_active: AtomicBool,
    /// Wakes the flusher when a message was buffered while peers are up.
    pub(crate) flush_wanted: Notify,
    /// Wakes [`PeerSet::flushed`] waiters when the backlog empties.
    pub(crate) drained: Notify,
    pub(crate) stats: PeerSetStats,
    /// The next peer in turn, shared by every clone and the flusher: a
    /// resend made through another clone goes to the peer after the one
    /// that failed.
    pub(crate) cursor: AtomicUsize,
    /// See [`PeerSet::set_load`].
    pub(crate) load: std::sync::OnceLock<Arc<LoadFn>>,
}

impl Shared {
    /// What picks the one peer of a [`Destination::AnyOne`] message.
    pub(crate) fn share(&self) -> crate::routing::Sharing<'_> {
        crate::routing::Sharing { share: self.config.share, load: self.load.get().map(|load| &**load) }
    }

    /// How long the flusher waits for more peers before flushing.
    pub(crate) fn settle(&self) -> std::time::Duration {
        self.config.settle
    }

    pub(crate) fn backlog(&self) -> MutexGuard<'_, Backlog> {
        lock(&self.backlog)
    }

    /// Buffers `message` if there is room; hands it back otherwise.
    fn try_buffer(&self, message: Message) -> Result<(), Message> {
        self.buffer_if(message, Backlog::has_room)
    }

    /// Buffers a message that was accepted once already, whatever the mark.
    fn rebuffer(&self, message: Message) {
        // Cannot fail: the condition always holds.
        let _ = self.buffer_if(message, |_, _| true);
    }

    fn buffer_if(
        &self,
        message: Message,
        room: impl Fn(&Backlog, &PeerSetConfig) -> bool,
    ) -> Result<(), Message> {
        let mut backlog = self.backlog();
        if backlog.holds(&message) {
            // A resend of a message that never left: it is still on its way.
            return Ok(());
        }
        if !room(&backlog, &self.config) {
            return Err(message);
        }
        backlog.push_back(message);
        self.backlog_active.store(true, Ordering::Release);
        drop(backlog);
        self.flush_wanted.notify_one();
        Ok(())
    }

    /// Ready when the buffer has room, when full buffers fail at once, or
    /// when the transport is closed (the send then fails with `Closed`).
    fn poll_buffer_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut backlog = self.backlog();
        if self.config.buffer_when_full == WhenFull::Drop
            || backlog.has_room(&self.config)
            || self.transport.is_closed()
        {
            return Poll::Ready(());
        }
        backlog.register(cx.waker());
        Poll::Pending
    }

    /// Whether messages must go through the buffer to keep send order: no
    /// peer is up, or earlier messages are still waiting there.
    fn buffering(&self) -> bool {
        self.backlog_active.load(Ordering::Acquire) || self.transport.with_peers(|peers| peers.is_empty())
    }

    /// Whether a send waiting for room should look again: some outbox has
    /// room, a peer has gone, or none is left.
    pub(crate) fn any_room_or_change(&self) -> bool {
        self.transport.with_peers(|peers| {
            peers.is_empty() || peers.table().iter().any(|peer| peer.has_room() || peer.is_closed())
        })
    }

    pub(crate) fn count_slow_drop(&self, handle: &PeerHandle) {
        let peer = handle.id();
        handle.counters().record_dropped(1);
        self.stats.count_slow_drop(peer, &self.transport);
        self.transport.emit(Event::Dropped {
            peer: Some(peer),
            count: 1,
            reason: DropReason::SlowSubscriber,
        });
    }

    /// One try at a send that does not wait: see [`PeerSet::try_send_borrowed`].
    fn try_send_borrowed(&self, message: &Message) -> Result<Outcome, SendErrorKind> {
        let max = self.transport.config().max_frame_length;
        let len = message.frame.envelope_len();
        if len > max {
            return Err(SendErrorKind::TooLarge { len, max });
        }
        if self.transport.is_closed() {
            return Err(SendErrorKind::Closed);
        }
        let by_identity = matches!(message.to, Destination::Peer(_));
        // One look at the peers for both questions: any up, and where to.
        // The usual outcome, queued for one peer, comes out of the read of
        // the peers as that peer's identity alone, written straight to this
        // frame (see `route`); only the other outcomes are moved out whole.
        let mut sent_to = NO_PEER;
        let mut other = None;
        let looked = (by_identity || !self.backlog_active.load(Ordering::Acquire))
            && self.transport.with_peers(|peers| {
                if !by_identity && peers.is_empty() {
                    return false;
                }
                match route(peers, &self.cursor, self.share(), message, &mut sent_to, &mut |peer| {
                    self.count_slow_drop(peer)
                }) {
                    Routed::ToPeer => {}
                    rare => other = Some(rare),
                }
                true
            });
        if !looked {
            // No peer is up, or earlier messages are still waiting in the
            // buffer: this one waits behind them, to keep send order.
            return match self.try_buffer(message.clone()) {
                Ok(()) => Ok(Outcome::Sent(None)),
                Err(_) if self.config.buffer_when_full == WhenFull::Drop => Err(SendErrorKind::BufferFull),
                Err(_) => Ok(Outcome::WouldWait),
            };
        }
        match other.unwrap_or(Routed::ToPeer) {
            Routed::ToPeer => Ok(Outcome::Sent(Some(sent_to))),
            Routed::Published => Ok(Outcome::Sent(None)),
            Routed::NoPeer => {
                // Every peer turned out to be gone: the message waits for the next ones.
                self.rebuffer(message.clone());
                Ok(Outcome::Sent(None))
            }
            Routed::UnknownPeer(peer) => Err(SendErrorKind::UnknownPeer(peer)),
            Routed::Full | Routed::WaitFor(_) => Ok(Outcome::WouldWait),
            Routed::CopiesWaiting(subscribers) => {
                let frame = message.frame.clone();
                Ok(Outcome::CopiesWaiting(ResponseFuture::waiting(async move {
                    for peer in subscribers {
                        // A subscriber that leaves while we wait simply misses it.
                        let _ = peer.send(Outgoing::to_this_peer(frame.clone())).await;
                    }
                    Ok(())
                })))
            }
        }
    }

    /// One try at a send that does not wait, with the message handed back
    /// when it was not queued: see [`PeerSet::try_send`].
    fn try_send(&self, message: Message) -> Result<Attempt, SendError> {
        match self.try_send_borrowed(&message) {
            Ok(Outcome::Sent(peer)) => Ok(Attempt::Sent(peer)),
            Ok(Outcome::WouldWait) => Ok(Attempt::WouldWait(message)),
            Ok(Outcome::CopiesWaiting(copies)) => Ok(Attempt::Queued(copies)),
            Err(kind) => Err(SendError::new(kind, message)),
        }
    }

    /// Completes when a new try at sending `message` may succeed.
    async fn room_for(&self, message: &Message) {
        if !matches!(message.to, Destination::Peer(_)) && self.buffering() {
            std::future::poll_fn(|cx| self.poll_buffer_room(cx)).await;
            return;
        }
        let mut room = self.transport.room_waiter();
        match message.to {
            Destination::Peer(id) => {
                room.until(|| {
                    self.transport.is_closed()
                        || self.transport.with_peers(|peers| {
                            peers.get(id).is_none_or(|peer| peer.has_room() || peer.is_closed())
                        })
                })
                .await;
            }
            _ => {
                room.until(|| self.transport.is_closed() || self.buffering() || self.any_room_or_change())
                    .await
            }
        }
    }

    /// The whole send, waiting in the returned future when it must.
    fn send(self: &Arc<Self>, message: Message) -> ResponseFuture {
        let mut message = match self.try_send(message) {
            Ok(Attempt::Sent(_)) => return ResponseFuture::done(Ok(())),
            Ok(Attempt::Queued(queued)) => return queued,
            Ok(Attempt::WouldWait(message)) => message,
            Err(e) => return ResponseFuture::done(Err(e)),
        };
        let shared = self.clone();
        ResponseFuture::waiting(async move {
            loop {
                shared.room_for(&message).await;
                match shared.try_send(message)? {
                    Attempt::Sent(_) => return Ok(()),
                    Attempt::Queued(queued) => return queued.await,
                    Attempt::WouldWait(back) => message = back,
                }
            }
        })
    }
}

/// What became of [`PeerSet::try_send_borrowed`]: the message is still
/// the caller's, whatever it says.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// Copies are queued in the outboxes (or in the no-peer buffer); in the
    /// outbox of this peer, when it went to exactly one.
    Sent(Option<PeerId>),
    /// Not queued: a send would have to wait for room.
    WouldWait,
    /// Publish with [`WhenFull::Wait`]: queued for every subscriber with room;
    /// the future queues the copies of the full ones as they make room.
    CopiesWaiting(ResponseFuture),
}

/// What became of [`PeerSet::try_send`].
#[derive(Debug)]
#[must_use]
pub enum Attempt {
    /// Queued in the outboxes (or in the no-peer buffer); in the outbox of
    /// this peer, when it went to exactly one.
    Sent(Option<PeerId>),
    /// Not queued: a send would have to wait for room. The message is handed back.
    WouldWait(Message),
    /// Publish with [`WhenFull::Wait`]: queued for every subscriber with room;
    /// the future queues the copies of the full ones as they make room.
    Queued(ResponseFuture),
}

/// Puts each [`Message`] in the outboxes of the peers its [`Destination`]
/// names, following the transport's peers as they come and go.
///
/// - [`Destination::Peer`]: exactly that peer; waits for room in its outbox;
///   fails at once with [`SendErrorKind::UnknownPeer`] (message handed back)
///   if it is not connected.
/// - [`Destination::AnyOne`] (and `Unresolved`): the next peer, in connection
///   order, that has room; a full peer is skipped.
/// - [`Destination::Everyone`]: a copy (sharing the payload) to every peer;
///   a full peer's copy is dropped and counted, or waited for, per `when_full`.
///
/// While no peer is connected, `AnyOne` and `Everyone` messages are held in
/// a bounded buffer ([`PeerSetConfig`]) and flushed, in order, when peers
/// come up. Messages queued for a peer that disconnects before writing them
/// come back and are routed again (`AnyOne` messages only).
///
/// Two ways in, one routing function behind both:
/// - [`send`](PeerSet::send) takes `&self`: any number of tasks send through
///   clones at once, with no lock held across a send and no allocation
///   unless the send must wait. This is the facade's path.
/// - `tower::Service`, for stacking middleware. **Readiness** carries
///   backpressure: `poll_ready` is `Pending` (never an error) while every
///   connected peer's outbox is full, or while no peer is connected and the
///   buffer is at its mark with [`WhenFull::Wait`]. Correctness never
///   depends on it: a `call` made without readiness still respects every
///   limit, waiting in its response future if it must.
///
/// Cloning is cheap; clones share the buffer, the counters and the
/// round-robin position.
pub struct PeerSet {
    shared: Arc<Shared>,
    /// Only while `poll_ready` found every outbox full.
    room: Option<RoomWaiter>,
}

impl Clone for PeerSet {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), room: None }
    }
}

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSet").field("peers", &self.peers().len()).finish_non_exhaustive()
    }
}

impl PeerSet {
    /// A peer set over `transport`'s peers. `orphans` is the transport's
    /// [`TransportParts::orphans`](smartsock_transport::TransportParts::orphans):
    /// the messages of disconnected peers that are to be routed again.
    ///
    /// Spawns one background task (on the current tokio runtime) that flushes
    /// the no-peer buffer when peers come up; it ends when the transport closes.
    /// The peer set does not keep the transport open: keep a handle of your own.
    pub fn new(transport: &Transport, orphans: OrphanReceiver, config: PeerSetConfig) -> Self {
        let shared = Arc::new(Shared {
            transport: transport.detached(),
            config,
            backlog: Mutex::new(Backlog::default()),
            backlog_active: AtomicBool::new(false),
            flush_wanted: Notify::new(),
            drained: Notify::new(),
            stats: PeerSetStats::default(),
            cursor: AtomicUsize::new(0),
            load: std::sync::OnceLock::new(),
        });
        tokio::spawn(flusher(shared.clone(), transport.peers(), orphans));
        Self { shared, room: None }
    }

    /// Sets what [`Share::LeastLoaded`] counts for a peer beyond its outbox:
    /// an at-least-once sender reports its unacknowledged messages per peer.
    /// Only the first call counts.
    pub fn set_load(&self, load: Arc<LoadFn>) {
        let _ = self.shared.load.set(load);
    }

    /// Whether routing asks the load hook ([`set_load`](Self::set_load))
    /// about peers: under [`Share::LeastLoaded`](crate::Share::LeastLoaded).
    /// A caller that routes while holding a lock the hook takes must not
    /// route through this set.
    pub fn routes_by_load(&self) -> bool {
        self.shared.config.share == crate::Share::LeastLoaded
    }

    /// Sends `message` by its destination, through `&self`. The returned
    /// future is ready at once unless the send must wait for room; dropping
    /// it before it completes abandons the message.
    pub fn send(&self, message: Message) -> ResponseFuture {
        self.shared.send(message)
    }

    /// One try at sending `message` that never waits for room: the message
    /// is queued ([`Attempt::Sent`], naming the peer when it went to one), or handed back because a send would
    /// have to wait ([`Attempt::WouldWait`]; wait with
    /// [`room_for`](PeerSet::room_for), then try again). Fails at once for
    /// a message that can never go (too large, unknown peer, closed, full
    /// buffer under [`WhenFull::Drop`]), handing it back inside the error.
    ///
    /// With this pair a caller can bound the wait and still get the message
    /// back when it gives up, which a dropped future cannot offer.
    pub fn try_send(&self, message: Message) -> Result<Attempt, SendError> {
        self.shared.try_send(message)
    }

    /// [`try_send`](PeerSet::try_send) without giving the message up: the
    /// queues take copies (a small payload encoded, a large one shared), so
    /// the caller keeps the message whatever the outcome, and no message
    /// moves through the call. Fails at once, with the reason only, for a
    /// message that can never go.
    #[inline]
    pub fn try_send_borrowed(&self, message: &Message) -> Result<Outcome, SendErrorKind> {
        self.shared.try_send_borrowed(message)
    }

    /// Completes when a new try at sending `message` may succeed: room in an
    /// outbox it may use (or the no-peer buffer), a change of peers, or close.
    pub async fn room_for(&self, message: &Message) {
        self.shared.room_for(message).await;
    }

    /// The peers connected now.
    pub fn peers(&self) -> smartsock_transport::PeerTable {
        self.shared.transport.peer_table()
    }

    /// What was dropped or routed again so far.
    pub fn stats(&self) -> &PeerSetStats {
        &self.shared.stats
    }

    /// Messages waiting in the no-peer buffer.
    pub fn buffered(&self) -> usize {
        self.shared.backlog().len()
    }

    /// Takes the at-least-once message `id` out of the no-peer buffer, if it
    /// is still waiting there: for a sender that has given it up, so that it
    /// is not delivered after being handed back. True if it was there.
    pub fn withdraw(&self, id: MsgId) -> bool {
        self.shared.backlog().withdraw(id).is_some()
    }

    /// Completes when the no-peer buffer is empty: everything sent so far is
    /// in some peer's outbox. Never completes while no peer is connected and
    /// messages are buffered; bound it with a timeout.
    pub async fn flushed(&self) {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.backlog().is_idle() {
                return;
            }
            drained.await;
        }
    }

    /// Ready when a send of an un-addressed message would not wait: the
    /// readiness `tower::Service::poll_ready` reports, for callers that hold
    /// a `&mut PeerSet`.
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        if shared.transport.is_closed() {
            // The send hands the message back with `Closed`.
            return Poll::Ready(());
        }
        if shared.buffering() {
            return shared.poll_buffer_room(cx);
        }
        let room = self.room.get_or_insert_with(|| shared.transport.room_waiter());
        match room.poll_until(cx, || shared.transport.is_closed() || shared.any_room_or_change()) {
            Poll::Ready(()) => {
                self.room = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tower::Service<Message> for PeerSet {
    type Response = ();
    type Error = SendError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_room(cx).map(Ok)
    }

    fn call(&mut self, message: Message) -> ResponseFuture {
        self.shared.send(message)
    }
}
