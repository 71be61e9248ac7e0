//! [`PeerSet`]: the service that puts frames in peers' outboxes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::future::{BoxFuture, Either, Ready, ready};
use smartsock_transport::{
    DropReason, Event, Frame, MsgId, Orphans, Outgoing, PeerHandle, PeerId, PeerTable, Transport,
};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tracing::debug;

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
}

impl Default for PeerSetConfig {
    fn default() -> Self {
        Self { buffer_capacity: 1024, buffer_bytes: 64 * 1024 * 1024, buffer_when_full: WhenFull::Wait }
    }
}

/// Counters of what the peer set dropped or moved; read them with [`PeerSet::stats`].
#[derive(Debug, Default)]
pub struct PeerSetStats {
    slow_subscriber_drops: AtomicU64,
    rerouted: AtomicU64,
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
            let connected = transport.peer_table();
            by_peer.retain(|id, _| connected.iter().any(|p| p.id() == *id));
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

/// The messages held while no peer can take them, in send order.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Message>,
    bytes: usize,
    /// The flusher has popped a message it has not delivered yet: new sends
    /// must still queue behind it to keep send order.
    in_flight: bool,
    /// Senders waiting for room.
    waiters: Vec<Waker>,
    /// Ids of the at-least-once messages in `queue`: a resend of a message
    /// still waiting here is the same message, so it is not queued twice.
    requests: HashSet<MsgId>,
}

fn request_id(message: &Message) -> Option<MsgId> {
    match message.frame {
        Frame::DataReq { id, .. } => Some(id),
        _ => None,
    }
}

impl Backlog {
    fn has_room(&self, config: &PeerSetConfig) -> bool {
        self.queue.len() < config.buffer_capacity && self.bytes < config.buffer_bytes
    }

    /// Whether `message` is an at-least-once message already waiting here.
    fn holds(&self, message: &Message) -> bool {
        request_id(message).is_some_and(|id| self.requests.contains(&id))
    }

    /// Queues `message` unless it is already waiting here.
    fn push_back(&mut self, message: Message) {
        if let Some(id) = request_id(&message) {
            if !self.requests.insert(id) {
                return;
            }
        }
        self.bytes += message.payload().len();
        self.queue.push_back(message);
    }

    /// Puts `message` first in line, unless it is already waiting here.
    fn push_front(&mut self, message: Message) {
        if let Some(id) = request_id(&message) {
            if !self.requests.insert(id) {
                return;
            }
        }
        self.bytes += message.payload().len();
        self.queue.push_front(message);
    }

    fn pop_front(&mut self) -> Option<Message> {
        let message = self.queue.pop_front()?;
        self.forget(&message);
        Some(message)
    }

    /// Takes out the at-least-once message `id`, if it is waiting here.
    fn withdraw(&mut self, id: MsgId) -> Option<Message> {
        if !self.requests.contains(&id) {
            return None;
        }
        let at = self.queue.iter().position(|m| request_id(m) == Some(id))?;
        let message = self.queue.remove(at)?;
        self.forget(&message);
        Some(message)
    }

    fn forget(&mut self, message: &Message) {
        self.bytes -= message.payload().len();
        if let Some(id) = request_id(message) {
            self.requests.remove(&id);
        }
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.in_flight
    }
}

struct Shared {
    transport: Transport,
    config: PeerSetConfig,
    backlog: Mutex<Backlog>,
    /// Mirrors "the backlog is not idle", so the hot path skips the lock.
    backlog_active: AtomicBool,
    /// Wakes the flusher when a message was buffered while peers are up.
    flush_wanted: Notify,
    /// Wakes [`PeerSet::flushed`] waiters when the backlog empties.
    drained: Notify,
    stats: PeerSetStats,
    /// The next peer in turn, shared by every clone and the flusher: a
    /// resend made through another clone goes to the peer after the one
    /// that failed.
    cursor: AtomicUsize,
    /// The transport's "an outbox may have room" signal.
    room: Arc<Notify>,
}

impl Shared {
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
        let mut backlog = lock(&self.backlog);
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
        let mut backlog = lock(&self.backlog);
        if self.config.buffer_when_full == WhenFull::Drop
            || backlog.has_room(&self.config)
            || self.transport.is_closed()
        {
            return Poll::Ready(());
        }
        register(&mut backlog.waiters, cx.waker());
        Poll::Pending
    }

    /// Buffers `message`, waiting for room if the policy says so.
    fn buffer(self: &Arc<Self>, message: Message) -> ResponseFuture {
        let message = match self.try_buffer(message) {
            Ok(()) => return ResponseFuture::done(Ok(())),
            Err(message) if self.config.buffer_when_full == WhenFull::Drop => {
                return ResponseFuture::done(Err(SendError::new(SendErrorKind::BufferFull, message)));
            }
            Err(message) => message,
        };
        // Only reached by a call made without readiness while the buffer is full.
        let shared = self.clone();
        ResponseFuture::waiting(async move {
            let mut message = message;
            loop {
                futures::future::poll_fn(|cx| shared.poll_buffer_room(cx)).await;
                if shared.transport.is_closed() {
                    return Err(SendError::new(SendErrorKind::Closed, message));
                }
                match shared.try_buffer(message) {
                    Ok(()) => return Ok(()),
                    Err(back) => message = back,
                }
            }
        })
    }

    fn wake_buffer_waiters(&self) {
        for waker in lock(&self.backlog).waiters.drain(..) {
            waker.wake();
        }
    }

    fn count_slow_drop(&self, peer: PeerId) {
        self.stats.count_slow_drop(peer, &self.transport);
        self.transport.emit(Event::Dropped {
            peer: Some(peer),
            count: 1,
            reason: DropReason::SlowSubscriber,
        });
    }
}

fn register(waiters: &mut Vec<Waker>, waker: &Waker) {
    if !waiters.iter().any(|w| w.will_wake(waker)) {
        waiters.push(waker.clone());
    }
}

/// A `tower::Service` that hands each [`Message`] to the outboxes of the
/// peers its [`Destination`] names, following the transport's peers as they
/// come and go.
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
/// **Readiness** carries backpressure: `poll_ready` is `Pending` (never an
/// error) while every connected peer's outbox is full, or while no peer is
/// connected and the buffer is at its mark with [`WhenFull::Wait`].
/// Correctness never depends on it: a `call` made without readiness still
/// respects every limit, waiting in its response future if it must.
///
/// Cloning is cheap; clones share the buffer, the counters and the
/// round-robin position.
pub struct PeerSet {
    shared: Arc<Shared>,
    table: watch::Receiver<PeerTable>,
    peers: PeerTable,
    index: HashMap<PeerId, usize>,
    stale: bool,
    /// Only while every outbox is full: the wake-up for "an outbox may have
    /// room". Dropping it (a caller that stops waiting) holds nothing.
    room_wait: Option<Pin<Box<OwnedNotified>>>,
}

impl Clone for PeerSet {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            table: self.table.clone(),
            peers: self.peers.clone(),
            index: self.index.clone(),
            stale: self.stale,
            room_wait: None,
        }
    }
}

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSet").field("peers", &self.peers.len()).finish_non_exhaustive()
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
    pub fn new(transport: &Transport, orphans: mpsc::Receiver<Orphans>, config: PeerSetConfig) -> Self {
        let shared = Arc::new(Shared {
            transport: transport.detached(),
            config,
            backlog: Mutex::new(Backlog::default()),
            backlog_active: AtomicBool::new(false),
            flush_wanted: Notify::new(),
            drained: Notify::new(),
            stats: PeerSetStats::default(),
            cursor: AtomicUsize::new(0),
            room: transport.room_signal(),
        });
        let table = transport.peers();
        tokio::spawn(flusher(shared.clone(), table.clone(), orphans));
        let mut set = Self {
            shared,
            table,
            peers: PeerTable::from(Vec::new()),
            index: HashMap::new(),
            stale: true,
            room_wait: None,
        };
        set.refresh();
        set
    }

    /// The peers connected now, as this peer set last saw them.
    pub fn peers(&mut self) -> PeerTable {
        self.refresh();
        self.peers.clone()
    }

    /// What was dropped or routed again so far.
    pub fn stats(&self) -> &PeerSetStats {
        &self.shared.stats
    }

    /// Messages waiting in the no-peer buffer.
    pub fn buffered(&self) -> usize {
        lock(&self.shared.backlog).queue.len()
    }

    /// Takes the at-least-once message `id` out of the no-peer buffer, if it
    /// is still waiting there: for a sender that has given it up, so that it
    /// is not delivered after being handed back. True if it was there.
    pub fn withdraw(&self, id: MsgId) -> bool {
        lock(&self.shared.backlog).withdraw(id).is_some()
    }

    /// Completes when the no-peer buffer is empty: everything sent so far is
    /// in some peer's outbox. Never completes while no peer is connected and
    /// messages are buffered; bound it with a timeout.
    pub async fn flushed(&self) {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if lock(&self.shared.backlog).is_idle() {
                return;
            }
            drained.await;
        }
    }

    fn refresh(&mut self) {
        if !self.stale && !self.table.has_changed().unwrap_or(false) {
            return;
        }
        self.peers = self.table.borrow_and_update().clone();
        self.index = self.peers.iter().enumerate().map(|(i, p)| (p.id(), i)).collect();
        self.stale = false;
    }

    fn buffering(&self) -> bool {
        self.peers.is_empty() || self.shared.backlog_active.load(Ordering::Acquire)
    }

    /// Whether some peer can take a frame now (a closed outbox counts: the
    /// send finds the peer gone and routes elsewhere).
    fn any_room(&self) -> bool {
        self.peers.iter().any(|p| p.room() > 0 || p.is_closed())
    }

    /// Slow path of readiness: every outbox was full. Waits on the
    /// transport's room signal, registering before looking again so that a
    /// writer draining in between is not missed.
    fn poll_any_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let room = self.shared.room.clone();
            self.room_wait.get_or_insert_with(|| Box::pin(room.notified_owned())).as_mut().enable();
            if self.table.has_changed().unwrap_or(false) || self.any_room() {
                self.room_wait = None;
                return Poll::Ready(());
            }
            let wait = self.room_wait.as_mut().expect("set above");
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.room_wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn send_any(&mut self, message: Message) -> ResponseFuture {
        let mut item = Outgoing::to_any_peer(message.frame);
        let cursor = self.shared.cursor.load(Ordering::Relaxed);
        let count = self.peers.len();
        let mut live = None;
        for offset in 0..count {
            let i = (cursor + offset) % count;
            match self.peers[i].try_send(item) {
                Ok(()) => {
                    self.shared.cursor.store(i + 1, Ordering::Relaxed);
                    return ResponseFuture::done(Ok(()));
                }
                Err(TrySendError::Full(back)) => {
                    live.get_or_insert(i);
                    item = back;
                }
                Err(TrySendError::Closed(back)) => {
                    self.stale = true;
                    item = back;
                }
            }
        }
        let message = Message { to: Destination::AnyOne, frame: item.frame };
        match live {
            // Every peer is gone: the message waits for the next ones.
            None => {
                self.shared.rebuffer(message);
                ResponseFuture::done(Ok(()))
            }
            // Every outbox is full (a call made without readiness): wait for
            // room at the next peer in turn.
            Some(i) => {
                self.shared.cursor.store(i + 1, Ordering::Relaxed);
                let outbox = self.peers[i].outbox().clone();
                let shared = self.shared.clone();
                ResponseFuture::waiting(async move {
                    if let Err(closed) = outbox.send(Outgoing::to_any_peer(message.frame)).await {
                        shared.rebuffer(Message { to: Destination::AnyOne, frame: closed.0.frame });
                    }
                    Ok(())
                })
            }
        }
    }

    fn send_to_peer(&mut self, peer: PeerId, message: Message) -> ResponseFuture {
        let Some(&i) = self.index.get(&peer) else {
            return ResponseFuture::done(Err(SendError::new(SendErrorKind::UnknownPeer(peer), message)));
        };
        let handle: &PeerHandle = &self.peers[i];
        match handle.try_send(Outgoing::to_this_peer(message.frame)) {
            Ok(()) => ResponseFuture::done(Ok(())),
            Err(TrySendError::Full(item)) => {
                let outbox = handle.outbox().clone();
                ResponseFuture::waiting(async move {
                    outbox.send(item).await.map_err(|closed| {
                        let message = Message { to: Destination::Peer(peer), frame: closed.0.frame };
                        SendError::new(SendErrorKind::UnknownPeer(peer), message)
                    })
                })
            }
            Err(TrySendError::Closed(item)) => {
                self.stale = true;
                let message = Message { to: Destination::Peer(peer), frame: item.frame };
                ResponseFuture::done(Err(SendError::new(SendErrorKind::UnknownPeer(peer), message)))
            }
        }
    }

    fn send_everyone(&mut self, message: Message, when_full: WhenFull) -> ResponseFuture {
        let mut waits = Vec::new();
        let mut full = Vec::new();
        let mut delivered_to_some = false;
        for peer in self.peers.iter() {
            match peer.try_send(Outgoing::to_this_peer(message.frame.clone())) {
                Ok(()) => delivered_to_some = true,
                Err(TrySendError::Full(item)) => match when_full {
                    WhenFull::Drop => full.push(peer.id()),
                    WhenFull::Wait => waits.push((peer.outbox().clone(), item)),
                },
                Err(TrySendError::Closed(_)) => self.stale = true,
            }
        }
        if !delivered_to_some && waits.is_empty() && full.is_empty() {
            // Every subscriber turned out to be gone: keep it for the next ones.
            self.shared.rebuffer(message);
            return ResponseFuture::done(Ok(()));
        }
        for peer in full {
            self.shared.count_slow_drop(peer);
        }
        if waits.is_empty() {
            return ResponseFuture::done(Ok(()));
        }
        ResponseFuture::waiting(async move {
            for (outbox, item) in waits {
                // A subscriber that leaves while we wait simply misses it.
                let _ = outbox.send(item).await;
            }
            Ok(())
        })
    }
}

impl tower::Service<Message> for PeerSet {
    type Response = ();
    type Error = SendError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.refresh();
        if self.shared.transport.is_closed() {
            // `call` hands the message back with `Closed`.
            return Poll::Ready(Ok(()));
        }
        if self.buffering() {
            return self.shared.poll_buffer_room(cx).map(Ok);
        }
        if self.any_room() {
            self.room_wait = None;
            return Poll::Ready(Ok(()));
        }
        self.poll_any_room(cx).map(Ok)
    }

    fn call(&mut self, message: Message) -> ResponseFuture {
        let max = self.shared.transport.config().max_frame_length;
        let len = message.frame.envelope_len();
        if len > max {
            return ResponseFuture::done(Err(SendError::new(SendErrorKind::TooLarge { len, max }, message)));
        }
        if self.shared.transport.is_closed() {
            return ResponseFuture::done(Err(SendError::new(SendErrorKind::Closed, message)));
        }
        self.refresh();
        match message.to {
            Destination::Peer(peer) => self.send_to_peer(peer, message),
            _ if self.buffering() => self.shared.buffer(message),
            Destination::Everyone { when_full } => self.send_everyone(message, when_full),
            Destination::Unresolved | Destination::AnyOne => self.send_any(message),
        }
    }
}

/// The response of [`PeerSet`]: ready at once when the frame went straight
/// into an outbox (the usual case), or waiting for room.
pub struct ResponseFuture {
    inner: Either<Ready<SendResult>, BoxFuture<'static, SendResult>>,
}

type SendResult = Result<(), SendError>;

impl ResponseFuture {
    fn done(result: Result<(), SendError>) -> Self {
        Self { inner: Either::Left(ready(result)) }
    }

    fn waiting(future: impl Future<Output = Result<(), SendError>> + Send + 'static) -> Self {
        Self { inner: Either::Right(Box::pin(future)) }
    }
}

impl Future for ResponseFuture {
    type Output = Result<(), SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

/// The background task: flushes the no-peer buffer whenever peers are up, and
/// takes back the messages of disconnected peers.
async fn flusher(
    shared: Arc<Shared>,
    mut table: watch::Receiver<PeerTable>,
    mut orphans: mpsc::Receiver<Orphans>,
) {
    loop {
        flush(&shared, &mut table).await;
        tokio::select! {
            changed = table.changed() => if changed.is_err() { return },
            Some(Orphans { peer, frames }) = orphans.recv() => {
                debug!(%peer, count = frames.len(), "routing a disconnected peer's messages again");
                shared.stats.rerouted.fetch_add(frames.len() as u64, Ordering::Relaxed);
                let mut backlog = lock(&shared.backlog);
                // They were sent before anything still buffered: they go first.
                for item in frames.into_iter().rev() {
                    backlog.push_front(Message { to: Destination::AnyOne, frame: item.frame });
                }
                shared.backlog_active.store(true, Ordering::Release);
            }
            () = shared.flush_wanted.notified() => {}
            () = shared.transport.closed() => {
                // Senders waiting for buffer room must learn that it is over.
                shared.wake_buffer_waiters();
                return;
            }
        }
    }
}

/// Delivers buffered messages, in order, while peers are up.
async fn flush(shared: &Shared, table: &mut watch::Receiver<PeerTable>) {
    loop {
        // A flush can go on for long while peers keep up: let the runtime
        // run other tasks (the connections among them) in between.
        tokio::task::consume_budget().await;
        let peers = table.borrow_and_update().clone();
        let message = {
            let mut backlog = lock(&shared.backlog);
            if peers.is_empty() {
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
        let outcome = deliver_buffered(shared, &peers, table, message).await;
        let mut backlog = lock(&shared.backlog);
        backlog.in_flight = false;
        match outcome {
            Flushed::Delivered => {}
            // It stays first in line, and goes with the next try.
            Flushed::TryAgain(message) => backlog.push_front(message),
            Flushed::NoLivePeer(message) => {
                // Every listed peer is on its way out: wait for the table to
                // change (the flusher's loop does) instead of trying again.
                backlog.push_front(message);
                return;
            }
        }
    }
}

/// What became of one buffered message.
enum Flushed {
    Delivered,
    /// Every outbox was full; the flusher waited for room and tries again.
    TryAgain(Message),
    /// Every peer in the table has gone.
    NoLivePeer(Message),
}

/// Sends one buffered message to the peers of the moment.
async fn deliver_buffered(
    shared: &Shared,
    peers: &PeerTable,
    table: &mut watch::Receiver<PeerTable>,
    message: Message,
) -> Flushed {
    match message.to {
        Destination::Everyone { when_full: WhenFull::Wait } => {
            let mut delivered = false;
            for peer in peers.iter() {
                let item = Outgoing::to_this_peer(message.frame.clone());
                delivered |= peer.outbox().send(item).await.is_ok();
            }
            if delivered { Flushed::Delivered } else { Flushed::NoLivePeer(message) }
        }
        Destination::Everyone { when_full: WhenFull::Drop } => {
            let mut accepted = false;
            let mut full = Vec::new();
            for peer in peers.iter() {
                match peer.try_send(Outgoing::to_this_peer(message.frame.clone())) {
                    Ok(()) => accepted = true,
                    Err(TrySendError::Full(_)) => full.push(peer),
                    Err(TrySendError::Closed(_)) => {}
                }
            }
            if accepted {
                for peer in full {
                    shared.count_slow_drop(peer.id());
                }
                return Flushed::Delivered;
            }
            if full.is_empty() {
                return Flushed::NoLivePeer(message);
            }
            // Every live outbox is full: wait, as a send waits for readiness,
            // instead of dropping the message for everyone.
            room_or_change(full.into_iter(), table).await;
            Flushed::TryAgain(message)
        }
        _ => {
            let mut item = Outgoing::to_any_peer(message.frame);
            let mut full = Vec::new();
            let cursor = shared.cursor.load(Ordering::Relaxed);
            for offset in 0..peers.len() {
                let i = (cursor + offset) % peers.len();
                match peers[i].try_send(item) {
                    Ok(()) => {
                        shared.cursor.store(i + 1, Ordering::Relaxed);
                        return Flushed::Delivered;
                    }
                    Err(TrySendError::Full(back)) => {
                        full.push(&peers[i]);
                        item = back;
                    }
                    Err(TrySendError::Closed(back)) => item = back,
                }
            }
            let message = Message { to: Destination::AnyOne, frame: item.frame };
            if full.is_empty() {
                return Flushed::NoLivePeer(message);
            }
            // Every live outbox is full: wait for room in any (a stalled peer
            // must not hold the rest back) or for a new peer.
            room_or_change(full.into_iter(), table).await;
            Flushed::TryAgain(message)
        }
    }
}

/// Waits until one of `peers` has room in its outbox (or has gone), or the
/// transport's peers change.
async fn room_or_change<'a>(
    peers: impl Iterator<Item = &'a PeerHandle>,
    table: &mut watch::Receiver<PeerTable>,
) {
    let room = futures::future::select_all(peers.map(|peer| Box::pin(peer.outbox().reserve())));
    tokio::select! {
        _ = room => {}
        _ = table.changed() => {}
    }
}
