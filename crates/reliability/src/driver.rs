//! The one background task of an at-least-once sender: cuts time buckets,
//! resends what is due, gives up what ran out, and resends at once what a
//! disconnected peer held.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smartsock_patterns::{Attempt, Destination, Message, PeerSet, SendError, SendErrorKind};
use smartsock_transport::{DropReason, Event, EventsError, MsgId, PeerId, Transport};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::{debug, warn};

use crate::core::Core;
use crate::pending::Pending;
use crate::table::{PeerMap, Table};
use crate::tracked::{Untracked, Went};
use crate::undelivered::UndeliveredSender;

/// A message that ran out of attempts (or was still unacknowledged when the
/// sender shut down), handed back to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// Its message id.
    pub id: MsgId,
    /// The message, as last sent.
    pub message: Message,
    /// How many times it was sent.
    pub attempts: u32,
}

/// A handle on an at-least-once sender's state, from
/// [`AtLeastOnceLayer::handle`](crate::AtLeastOnceLayer::handle).
#[derive(Clone)]
pub struct AtLeastOnceHandle {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for AtLeastOnceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLeastOnceHandle").field("in_flight", &self.in_flight()).finish()
    }
}

impl AtLeastOnceHandle {
    /// Messages sent and not yet acknowledged nor given up.
    pub fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    /// Of those, the ones last sent to `peer` (as far as the route said):
    /// what a least-loaded route counts for it.
    pub fn outstanding(&self, peer: PeerId) -> usize {
        self.core.outstanding(peer)
    }

    /// The counters.
    pub fn stats(&self) -> &crate::AtLeastOnceStats {
        &self.core.stats
    }

    /// Completes when no message is waiting for its ACK. Bound it with a timeout.
    pub async fn settled(&self) {
        loop {
            let settled = self.core.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            settled.await;
        }
    }

    /// Stops resending: every message still pending is handed back as
    /// [`Undelivered`], and the driver task ends.
    pub fn shutdown(&self) {
        self.core.shut_down();
    }

    /// Sends `message` (a DATA message) as a DATA_REQ with a fresh id and
    /// tracks it, in one step: `send` sends the request it is given (the
    /// route only borrows it) and says where it went. Cheaper than
    /// [`try_track`](Self::try_track), the send and [`sent`](Self::sent):
    /// one turn of this sender's lock instead of two, and no ACK can come
    /// before the hand-over. `send` runs under that lock, a spin lock whose
    /// waiters (other senders, this sender's ACKs as they are read) spin
    /// for as long as it takes: it must be short, must not call this
    /// sender (a least-loaded route that asks
    /// [`outstanding`](Self::outstanding), say), and must not wait.
    ///
    /// Without waiting: at the in-flight limit (or after shutdown) `send`
    /// is not called.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use smartsock_patterns::{Message, Outcome, PeerSet, PeerSetConfig};
    /// use smartsock_reliability::{AtLeastOnceConfig, AtLeastOnceLayer, ReceiveSide, Untracked, Went};
    /// use smartsock_transport::{Transport, TransportConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let receiver = Transport::new(TransportConfig::default())?;
    /// let addr = receiver.transport.bind("127.0.0.1:0").await?;
    /// let sender = Transport::new(TransportConfig::default())?;
    /// sender.transport.connect(&addr.to_string())?;
    /// let peers = PeerSet::new(&sender.transport, sender.orphans, PeerSetConfig::default());
    /// let (layer, _undelivered) = AtLeastOnceLayer::new(AtLeastOnceConfig::default(), sender.acks)?;
    /// layer.start_direct(peers.clone()); // resends go straight into `peers`
    /// let handle = layer.handle();
    ///
    /// // Into the peers' queues (or the buffer, before the connection is up).
    /// let route = |request: &Message| match peers.try_send_borrowed(request) {
    ///     Ok(Outcome::Sent(peer)) => Went::Out(peer),
    ///     _ => Went::Nowhere,
    /// };
    /// assert_eq!(handle.try_send_tracked(Message::new("important"), route), Ok(()));
    /// assert_eq!(handle.in_flight(), 1);
    /// // A send that did not go hands the message back, untracked.
    /// let back = handle.try_send_tracked(Message::new("not now"), |_| Went::Nowhere);
    /// assert_eq!(back, Err(Untracked::NotSent(Message::new("not now"))));
    ///
    /// // Taking the message acknowledges it, and the ACK settles it.
    /// let (_from, payload) = ReceiveSide::new(64).take(receiver.inbound.recv().await?).expect("new");
    /// assert_eq!(payload, "important");
    /// tokio::time::timeout(Duration::from_secs(5), handle.settled()).await?;
    /// # Ok(())
    /// # }
    /// ```
    // Always inlined: see `Core::send_tracked`.
    #[inline(always)]
    pub fn try_send_tracked(
        &self,
        message: Message,
        send: impl FnOnce(&Message) -> Went,
    ) -> Result<(), Untracked> {
        self.core.send_tracked(message, send)
    }

    /// Starts tracking `message` (a DATA message) as a DATA_REQ with a fresh
    /// id, without waiting: for a caller that routes the request itself.
    /// Hands the message back at the in-flight limit (wait with
    /// [`room`](AtLeastOnceHandle::room)) or after shutdown.
    ///
    /// Then send the DATA_REQ it returns, and report the outcome with
    /// [`sent`](AtLeastOnceHandle::sent) or [`untrack`](AtLeastOnceHandle::untrack).
    pub fn try_track(&self, message: Message) -> Result<(crate::Tracked, Message), Message> {
        self.core.track(message, false, true)
    }

    /// The tracked message went out, to `peer` if the route said which: an
    /// ACK for it will then count only from that peer, and the resend rules
    /// can tell whether that peer is still working through earlier messages.
    /// `request` is the DATA_REQ that [`try_track`](Self::try_track)
    /// returned (the route only borrows it): it is kept from now on, for
    /// resends. Call this right after the send, with no await in between.
    ///
    /// `Err` holds the message (the DATA message it was) if the sender shut
    /// down and has already handed back everything pending: a hand-over
    /// that came later than the driver's wait for hand-overs (100 ms). The
    /// message went out but is not tracked; report it as not delivered.
    pub fn sent(
        &self,
        tracked: crate::Tracked,
        peer: Option<PeerId>,
        request: Message,
    ) -> Result<(), Message> {
        self.core.sent_to(tracked, peer, request)
    }

    /// The tracked message could not be sent: forgets it and turns the
    /// request handed back by the route into the DATA message it was.
    pub fn untrack(&self, tracked: crate::Tracked, message: Message) -> Message {
        self.core.untrack(tracked, message)
    }

    /// Whether the in-flight limit lets a message be tracked now.
    pub fn has_room(&self) -> bool {
        self.core.has_room()
    }

    /// Completes when the in-flight limit may let a message be tracked (or
    /// the sender shut down).
    pub async fn room(&self) {
        self.core.room().await;
    }

    /// Whether [`shutdown`](AtLeastOnceHandle::shutdown) has been called.
    pub fn is_shut_down(&self) -> bool {
        self.core.is_shut_down()
    }
}

/// Called with the id of each message given up, before it is handed back.
pub(crate) type GiveUpHook = Box<dyn Fn(MsgId) + Send + Sync>;

pub(crate) struct DriverParts {
    pub(crate) undelivered: UndeliveredSender,
    pub(crate) events: Option<Transport>,
    pub(crate) on_give_up: Option<GiveUpHook>,
    /// Cancelled once every service and the layer are gone: nothing new
    /// can be sent, so the driver ends when the table empties.
    pub(crate) users_gone: CancellationToken,
}

/// The length of one time bucket: the resend precision.
pub(crate) fn tick_length(core: &Core) -> Duration {
    let shortest = core.config.resend_timeout.min(core.config.give_up_after);
    (shortest / 10).max(Duration::from_millis(1))
}

/// What the due messages of one tick come to.
#[derive(Default)]
struct Due {
    /// Acknowledged payloads the sends have not freed yet (see
    /// `Retired`): freed once the table is let go.
    retired: Vec<bytes::Bytes>,
    /// `(seq, attempts, message)`.
    resend: Vec<(u64, u32, Message)>,
    /// For each resend whose last route named a peer, that peer: the one
    /// that did not acknowledge it (counted against it in its stats).
    resent_for: Vec<PeerId>,
    give_up: Vec<(MsgId, Pending)>,
}

/// What became of a resend.
pub(crate) enum Resent {
    /// Queued (or tried and failed for good); to this peer, when the route tells.
    To(Option<PeerId>),
    /// Not made: the message is for one peer by identity, and that peer is
    /// not connected now (it may be reconnecting).
    PeerAbsent,
}

/// How the driver sends a message again.
pub(crate) trait Resend: Send + 'static {
    /// Sends `message` again within `limit`.
    fn resend(&mut self, message: Message, limit: Duration) -> impl Future<Output = Resent> + Send;
}

/// Resends through a routing service, which does not say where each went.
pub(crate) struct ViaService<S>(pub(crate) S);

impl<S> Resend for ViaService<S>
where
    S: Service<Message, Response = (), Error = SendError> + Send + 'static,
    S::Future: Send,
{
    async fn resend(&mut self, message: Message, limit: Duration) -> Resent {
        resend(&mut self.0, message, limit).await;
        Resent::To(None)
    }
}

/// Resends straight into a peer set's outboxes, learning which peer took
/// each message: the resend rules can then tell whether that peer is still
/// working through what came before it.
pub(crate) struct ViaPeerSet(pub(crate) PeerSet);

impl Resend for ViaPeerSet {
    async fn resend(&mut self, mut message: Message, limit: Duration) -> Resent {
        let attempt = async {
            loop {
                match self.0.try_send(message) {
                    Ok(Attempt::Sent(peer)) => return Resent::To(peer),
                    Ok(Attempt::Queued(copies)) => {
                        let _ = copies.await;
                        return Resent::To(None);
                    }
                    Ok(Attempt::WouldWait(back)) => {
                        self.0.room_for(&back).await;
                        message = back;
                    }
                    Err(e) if matches!(e.kind(), SendErrorKind::UnknownPeer(_)) => return Resent::PeerAbsent,
                    Err(e) => {
                        debug!(error = %e, "resend failed");
                        return Resent::To(None);
                    }
                }
            }
        };
        // The attempt still counts; the next deadline tries again or gives up.
        timeout(limit, attempt).await.unwrap_or_else(|_| {
            debug!("resend could not be queued in time");
            Resent::To(None)
        })
    }
}

/// At shutdown, how many milliseconds the driver waits at most for senders
/// still handing a tracked message over to the table.
const HANDOVER_WAITS: usize = 100;

pub(crate) async fn drive<R: Resend>(core: Arc<Core>, mut resender: R, parts: DriverParts) {
    let DriverParts { undelivered, events, on_give_up, users_gone } = parts;
    let give_up = |id, entry| give_up(&core, &undelivered, events.as_ref(), on_give_up.as_deref(), id, entry);
    let tick = tick_length(&core);
    let mut peer_events = events.as_ref().map(Transport::events);
    let mut next_tick: Option<Instant> = Some(Instant::now());
    let mut senders_gone = false;
    loop {
        let mut due = Due::default();
        tokio::select! {
            biased;
            () = core.shutdown.cancelled() => break,
            event = async { peer_events.as_mut().expect("guarded").recv().await }, if peer_events.is_some() => {
                match event {
                    Ok(Event::PeerDisconnected { peer, .. }) => {
                        due = lost_with_peer(&core, &mut core.table(), |to| to == peer);
                        log_lost(Some(peer), &due);
                    }
                    // Missed events: look for pending messages whose peer has
                    // gone (the peers are listed before the table is locked).
                    Err(EventsError::Lagged(_)) => {
                        let peers = events.as_ref().expect("events").peer_table();
                        let connected: PeerMap<()> = peers.iter().map(|peer| (peer.id(), ())).collect();
                        due = lost_with_peer(&core, &mut core.table(), |to| !connected.contains_key(&to));
                        log_lost(None, &due);
                    }
                    Err(_) => peer_events = None,
                    Ok(_) => {}
                }
            }
            () = async { sleep_until(next_tick.expect("guarded")).await }, if next_tick.is_some() => {
                let now = Instant::now();
                let mut table = core.table();
                due = cut_and_collect(&core, &mut table, now);
                due.retired = table.retired.take_all();
                if table.pending.is_empty() {
                    // Sleep until a send wakes us: no tick while nothing waits.
                    table.driver_idle = true;
                    next_tick = None;
                } else {
                    next_tick = Some(now + tick);
                }
            }
            () = core.work.notified(), if next_tick.is_none() => next_tick = Some(Instant::now()),
            () = users_gone.cancelled(), if !senders_gone => senders_gone = true,
        }
        for (id, entry) in due.give_up {
            give_up(id, entry);
        }
        if let Some(transport) = &events {
            for &peer in &due.resent_for {
                if let Some(counters) = transport.peer_counters(peer) {
                    counters.record_resent(1);
                }
            }
        }
        for (seq, attempts, message) in due.resend {
            debug!(seq, attempt = attempts, "resending");
            core.stats.resent.fetch_add(1, Ordering::Relaxed);
            match resender.resend(message, core.config.resend_timeout).await {
                Resent::To(Some(peer)) => core.resent_to(seq, attempts, peer),
                Resent::To(None) => {}
                // A named peer that is away (reconnecting, say) does not use
                // up the message's attempts: only `give_up_after` bounds
                // the wait for it.
                Resent::PeerAbsent => core.resend_not_made(seq, attempts),
            }
        }
        if core.table().pending.is_empty() {
            core.settled.notify_waiters();
            if senders_gone {
                break;
            }
        }
    }
    // Everything still pending is handed back (nothing is given up
    // silently); later sends fail at once. A message still on its way into
    // the table (no await from tracking to handing the request over) is
    // waited for, briefly.
    for _ in 0..HANDOVER_WAITS {
        if core.table().in_send == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (pending, retired): (Vec<(u64, Pending)>, _) = {
        let mut table = core.table();
        // From here on a hand-over is refused (see `Core::sent_to`).
        table.drained = true;
        (table.pending.drain(), table.retired.take_all())
    };
    drop(retired);
    for (seq, entry) in pending {
        give_up(request_id(&entry.message, seq), entry);
    }
    core.room_signal.notify_waiters();
    core.settled.notify_waiters();
}

fn request_id(message: &Message, _seq: u64) -> MsgId {
    match message.frame {
        smartsock_transport::Frame::DataReq { id, .. } => id,
        _ => MsgId::from_bytes([0; 16]),
    }
}

/// Cuts a new bucket at `now` and collects what is due by then.
fn cut_and_collect(core: &Core, table: &mut Table, now: Instant) -> Due {
    let config = &core.config;
    let first_wait = config.resend_timeout.min(config.give_up_after);
    let last_end = table.cuts.back().map_or(table.unchecked, |&(_, end)| end);
    if last_end < table.next_seq {
        let end = table.next_seq;
        table.cuts.push_back((now, end));
    }
    table.last_cut = now;
    let mut due = Due::default();
    // First sends, bucket by bucket, oldest first.
    while let Some(&(cut, end)) = table.cuts.front() {
        if cut + first_wait > now {
            break;
        }
        table.cuts.pop_front();
        // Only what is still pending: a tick's scan under the table's lock
        // is bounded by the in-flight limit, not by the send rate.
        let mut counters = std::mem::take(&mut table.tick_counters);
        table.pending.counters_between(table.unchecked, end, &mut counters);
        for &seq in &counters {
            if let Some(entry) = table.pending.get_mut(seq) {
                entry.first_sent = Some(cut);
            }
            check(core, table, now, seq, 1, &mut due);
        }
        table.tick_counters = counters;
        table.unchecked = end;
    }
    // Resends, in deadline order.
    while let Some(&(deadline, seq, attempts)) = table.resends.front() {
        if deadline > now {
            break;
        }
        table.resends.pop_front();
        check(core, table, now, seq, attempts, &mut due);
    }
    due
}

/// Message `seq` reached a deadline set at its `attempts`th send: resend it,
/// postpone it, or give it up.
fn check(core: &Core, table: &mut Table, now: Instant, seq: u64, attempts: u32, due: &mut Due) {
    let config = &core.config;
    let Some(entry) = table.pending.get(seq) else { return };
    if entry.attempts != attempts {
        // Resent since (its peer left): a later deadline stands.
        return;
    }
    let first_sent = entry.first_sent.unwrap_or(now);
    let give_up_at = first_sent + config.give_up_after;
    if entry.attempts >= config.max_attempts || now >= give_up_at {
        let entry = table.pending.remove(seq).expect("present");
        table.release(entry.peer);
        due.give_up.push((request_id(&entry.message, seq), entry));
        return;
    }
    let still_working = entry.peer.and_then(|peer| table.progress.get(&peer)).is_some_and(|progress| {
        // The peer is acknowledging, and nothing sent after this message:
        // it is still working through what came before.
        progress.at + config.resend_timeout > now && progress.newest < entry.order
    });
    let next = (now + config.resend_timeout).min(give_up_at);
    let entry = table.pending.get_mut(seq).expect("present");
    if still_working {
        core.stats.postponed.fetch_add(1, Ordering::Relaxed);
        table.resends.push_back((next, seq, entry.attempts));
        return;
    }
    entry.attempts += 1;
    // Where it goes next is the route's choice.
    let was_with = entry.peer.take();
    due.resent_for.extend(was_with);
    entry.order = table.next_order;
    table.next_order += 1;
    due.resend.push((seq, entry.attempts, entry.message.clone()));
    let attempts = entry.attempts;
    table.release(was_with);
    table.resends.push_back((next, seq, attempts));
}

/// The messages last sent to a peer that has gone could not have been
/// acknowledged: resend them now. `has_gone` says which peers have gone
/// (one that disconnected, or, when events were missed, every peer not
/// connected now); it runs under the table's lock, so it consults nothing
/// else that locks.
fn lost_with_peer(core: &Core, table: &mut Table, has_gone: impl Fn(PeerId) -> bool) -> Due {
    let mut due = Due::default();
    let now = Instant::now();
    let next = now + core.config.resend_timeout;
    let mut lost: Vec<u64> = table
        .pending
        .iter()
        .filter(|(_, entry)| entry.peer.is_some_and(&has_gone))
        .map(|(seq, _)| seq)
        .collect();
    lost.sort_unstable();
    for seq in lost {
        let entry = table.pending.get_mut(seq).expect("listed");
        if entry.attempts >= core.config.max_attempts {
            // Its deadline gives it up.
            continue;
        }
        entry.attempts += 1;
        let was_with = entry.peer.take();
        due.resent_for.extend(was_with);
        entry.order = table.next_order;
        table.next_order += 1;
        due.resend.push((seq, entry.attempts, entry.message.clone()));
        let attempts = entry.attempts;
        table.release(was_with);
        table.resends.push_back((next, seq, attempts));
    }
    if !due.resend.is_empty() {
        // Keep the deadline queue in time order: these deadlines are later
        // than any already queued, but earlier entries may follow `next`
        // when `give_up_after` shortened them; sorting keeps it exact.
        table.resends.make_contiguous().sort_by_key(|&(deadline, ..)| deadline);
    }
    due
}

/// Logs what [`lost_with_peer`] found, after the table's lock is let go.
fn log_lost(gone: Option<PeerId>, due: &Due) {
    if !due.resend.is_empty() {
        debug!(peer = ?gone, count = due.resend.len(), "resending what a disconnected peer held");
    }
}

/// Sends again through the routing below, bounded in time so that a stuck
/// route cannot hold the driver for long.
async fn resend<S>(inner: &mut S, message: Message, limit: Duration)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let attempt = async {
        let service = inner.ready().await?;
        service.call(message).await
    };
    match timeout(limit, attempt).await {
        Ok(Ok(())) => {}
        // The attempt still counts; the next deadline tries again or gives up.
        Ok(Err(e)) => debug!(error = %e, "resend failed"),
        Err(_) => debug!("resend could not be queued in time"),
    }
}

fn give_up(
    core: &Core,
    undelivered: &UndeliveredSender,
    events: Option<&Transport>,
    on_give_up: Option<&(dyn Fn(MsgId) + Send + Sync)>,
    id: MsgId,
    entry: Pending,
) {
    if let Some(hook) = on_give_up {
        hook(id);
    }
    core.stats.undelivered.fetch_add(1, Ordering::Relaxed);
    warn!(%id, attempts = entry.attempts, "giving up on an unacknowledged message");
    if let Some(events) = events {
        let peer = match entry.message.to {
            Destination::Peer(peer) => Some(peer),
            _ => None,
        };
        events.emit(Event::Dropped { peer, count: 1, reason: DropReason::Undelivered });
    }
    let report = Undelivered { id, message: entry.message, attempts: entry.attempts };
    if !undelivered.offer(report) {
        core.stats.undelivered_not_kept.fetch_add(1, Ordering::Relaxed);
    }
    core.room_signal.notify_waiters();
}
