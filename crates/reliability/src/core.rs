//! The state of one at-least-once sender, shared by its services, the
//! facade's direct path, the ACK sink (called from the connections' tasks)
//! and the driver task.
//!
//! Per message, sending costs one short lock, held across the send: an id
//! (a counter and a random tag), the route (which only borrows the request,
//! so the payload is kept without being shared), and an insert in the
//! table of pending messages, a ring indexed by the counter. A caller that
//! cannot route under the lock (a least-loaded route asks for loads) takes
//! it twice: for the id before the send, for the insert after it. No timer
//! entry, no channel, no clock read: the driver cuts the stream of counters
//! into coarse time buckets on its own ticks, and every message of a bucket
//! shares one deadline. ACKs arrive in batches, one lock per read; an ACK
//! counts if its id is exactly that of a pending message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::RngCore;
use smartsock_patterns::Message;
use smartsock_transport::{Frame, MsgId, PeerId};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::AtLeastOnceConfig;
use crate::pending::{Pending, request_id};
use crate::short_lock::{ShortLock, ShortLockGuard};
use crate::stats::AtLeastOnceStats;
use crate::table::Table;
use crate::tracked::{Tracked, Untracked, Went};

/// The sender's table's guard. The table is taken by every at-least-once
/// send and every batch of ACKs. Its holds: a send, whose route pushes to a
/// queue, may write a frame to the stream itself and wake the writer; a
/// batch of ACKs; the driver's tick, whose scan is bounded by the in-flight
/// limit (it visits pending messages only, not every counter sent).
/// Payloads are freed, and resends logged, after the release (see
/// [`Retired`](crate::pending::Retired)). Rare longer holds, which waiters
/// spin through: a peer's disconnection scans every pending message for
/// those it held; a send made while no peer is up goes to the no-peer
/// buffer, whose lock (a std mutex) the flusher may hold while it moves a
/// departed peer's frames.
pub(crate) type TableGuard<'a> = ShortLockGuard<'a, Table>;

/// The DATA message a DATA_REQ was made from.
fn data_of(request: Message) -> Message {
    let frame = match request.frame {
        Frame::DataReq { payload, .. } => Frame::Data(payload),
        other => other,
    };
    Message { to: request.to, frame }
}

pub(crate) struct Core {
    pub(crate) config: AtLeastOnceConfig,
    table: ShortLock<Table>,
    pub(crate) stats: AtLeastOnceStats,
    /// Woken when in-flight room frees up, and on shutdown.
    pub(crate) room_signal: Arc<Notify>,
    pub(crate) settled: Notify,
    /// Wakes an idle driver.
    pub(crate) work: Notify,
    /// Cancelled at shutdown, for the driver to await.
    pub(crate) shutdown: CancellationToken,
    /// Set at shutdown, before `shutdown` is cancelled: what every send
    /// checks (the token's own check takes a lock).
    shut_down: AtomicBool,
}

impl Core {
    pub(crate) fn new(config: AtLeastOnceConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            table: ShortLock::new(Table::new(config.max_in_flight)),
            stats: AtLeastOnceStats::default(),
            room_signal: Arc::new(Notify::new()),
            settled: Notify::new(),
            work: Notify::new(),
            shutdown: CancellationToken::new(),
            shut_down: AtomicBool::new(false),
        })
    }

    /// Stops tracking new messages and ends the driver.
    pub(crate) fn shut_down(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.shutdown.cancel();
        self.room_signal.notify_waiters();
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn table(&self) -> TableGuard<'_> {
        // A spin lock is not poisoned by a panic. The one code that may
        // panic under it is a tracked send's route (`send_tracked`'s
        // `send`, which may be a caller's): its message is left in the
        // table, counted in flight, until the next send takes its counter.
        self.table.lock()
    }

    /// The id of message `seq`: the counter, then a random tag, so that a
    /// peer that saw some ids cannot make up others. Inlined: as a call
    /// it returned the id through memory, written in two halves and read
    /// back whole, a stall on every at-least-once send.
    #[inline]
    fn id(seq: u64, tag: u64) -> MsgId {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        bytes[8..].copy_from_slice(&tag.to_be_bytes());
        MsgId::from_bytes(bytes)
    }

    /// The counter `id` names, if it is one of ours at all (pending, its
    /// id is then compared whole).
    pub(crate) fn seq_of(id: MsgId) -> u64 {
        let mut seq = [0; 8];
        seq.copy_from_slice(&id.as_bytes()[..8]);
        u64::from_be_bytes(seq)
    }

    pub(crate) fn in_flight(&self) -> usize {
        let table = self.table();
        table.pending.len() + table.in_send
    }

    /// Starts tracking `message` as a DATA_REQ with a fresh id, if the
    /// in-flight limit allows (or `reserved` holds a place taken earlier).
    ///
    /// With `deferred`, the request goes into the table only when the
    /// caller hands it over after sending it ([`sent_to`](Core::sent_to)),
    /// so the route can borrow it; the caller must then do so (or
    /// [`untrack`](Core::untrack) it) with no await in between. Without,
    /// the table keeps a copy now (for a caller that gives the request away).
    pub(crate) fn track(
        &self,
        message: Message,
        reserved: bool,
        deferred: bool,
    ) -> Result<(Tracked, Message), Message> {
        if self.is_shut_down() {
            return Err(message);
        }
        let Frame::Data(payload) = message.frame else {
            return Err(message);
        };
        let mut table = self.table();
        if reserved {
            table.reserved -= 1;
        } else if !table.has_room(&self.config) {
            drop(table);
            return Err(Message { to: message.to, frame: Frame::Data(payload) });
        }
        let seq = table.next_seq;
        table.next_seq += 1;
        table.sent += 1;
        // Only ever changed under the table's lock: a plain store, not a
        // locked add (one atomic read-modify-write less per message).
        self.stats.sent.store(table.sent, Ordering::Relaxed);
        let tag = table.rng.next_u64();
        let request = Message { to: message.to, frame: Frame::DataReq { id: Self::id(seq, tag), payload } };
        if deferred {
            table.in_send += 1;
        } else {
            // The caller gives its request away: the table keeps a copy.
            self.keep_sent(table, seq, request.clone(), None, None);
        }
        Ok((Tracked { seq }, request))
    }

    /// Tracks `message` and has `send` send its DATA_REQ, in one turn of
    /// the table's lock: what `track`, the send and `sent_to` do in three
    /// steps, two lock turns. No ACK can overtake the hand-over, so there
    /// is nothing to keep for one. `send` must not use this sender (its
    /// lock is held).
    // Always inlined into the caller, where `send` is a known closure: as a
    // call, the message and the routing closure went through memory once
    // more (paired runs, at-least-once 64 B on current-thread: pairs 0.97 to
    // 1.17, median 1.10).
    #[inline(always)]
    pub(crate) fn send_tracked(
        &self,
        message: Message,
        send: impl FnOnce(&Message) -> Went,
    ) -> Result<(), Untracked> {
        if self.is_shut_down() {
            return Err(Untracked::Closed(message));
        }
        let Message { to, frame } = message;
        let payload = match frame {
            Frame::Data(payload) => payload,
            frame => return Err(Untracked::NotData(Message { to, frame })),
        };
        let mut table = self.table();
        if table.drained {
            drop(table);
            return Err(Untracked::Closed(Message { to, frame: Frame::Data(payload) }));
        }
        if !table.has_room(&self.config) {
            drop(table);
            return Err(Untracked::NoRoom(Message { to, frame: Frame::Data(payload) }));
        }
        let seq = table.next_seq;
        let tag = table.rng.next_u64();
        let order = table.next_order;
        // Made where it is kept and sent from there, so that it is not
        // moved again after the send. Its counter is past every bucket cut
        // so far: the driver's next cut takes it.
        let request = Message { to, frame: Frame::DataReq { id: Self::id(seq, tag), payload } };
        let kept = table
            .pending
            .insert(seq, Pending { message: request, attempts: 1, first_sent: None, peer: None, order });
        let Went::Out(peer) = send(&kept.message) else {
            let request = table.pending.remove(seq).expect("just put there").message;
            drop(table);
            return Err(Untracked::NotSent(data_of(request)));
        };
        kept.peer = peer;
        table.next_seq += 1;
        table.next_order += 1;
        table.sent += 1;
        self.stats.sent.store(table.sent, Ordering::Relaxed);
        if let Some(peer) = peer {
            table.hold(peer);
        }
        self.release_and_wake(table);
        Ok(())
    }

    /// Puts a request just sent for the first time into the pending table,
    /// releases the table and wakes an idle driver. Inlined: as a call it
    /// moved the request and the guard through memory on every send (a
    /// few percent of an at-least-once sender, in paired runs).
    #[inline(always)]
    fn keep_sent(
        &self,
        mut table: TableGuard<'_>,
        seq: u64,
        request: Message,
        first_sent: Option<Instant>,
        peer: Option<PeerId>,
    ) {
        let order = table.next_order;
        table.next_order += 1;
        table.pending.insert(seq, Pending { message: request, attempts: 1, first_sent, peer, order });
        if let Some(peer) = peer {
            table.hold(peer);
        }
        self.release_and_wake(table);
    }

    /// Lets go of the table after a first send went into it, waking the
    /// driver if it sleeps (it ticks only while messages wait), and frees
    /// one acknowledged payload.
    #[inline(always)]
    fn release_and_wake(&self, mut table: TableGuard<'_>) {
        let wake = std::mem::take(&mut table.driver_idle);
        // An acknowledged payload, freed on this thread (see `Retired`).
        let retired = table.retired.take_one();
        drop(table);
        drop(retired);
        if wake {
            self.work.notify_one();
        }
    }

    /// The message tracked with `deferred` went out, to `peer` if the route
    /// said which (an ACK then counts only from that peer): its request goes
    /// into the table now, kept for resends.
    ///
    /// An ACK can overtake this call: the peer answered before the sending
    /// thread got here, held up for a round trip (on a multi-thread runtime
    /// the writer woken by the send can preempt it right after the send).
    /// Such an ACK is kept, and settles the message here if it has the
    /// message's whole id and came from the peer it went to; otherwise it
    /// counts as unknown and the message is resent at its deadline. A
    /// message whose time bucket the driver checked meanwhile gets a
    /// deadline of its own.
    ///
    /// Hands the message back (as the DATA message it was) if the driver has
    /// already ended: a hand-over later than its wait at shutdown.
    pub(crate) fn sent_to(
        &self,
        tracked: Tracked,
        peer: Option<PeerId>,
        request: Message,
    ) -> Result<(), Message> {
        let mut table = self.table();
        if table.drained {
            drop(table);
            return Err(self.untrack(tracked, request));
        }
        table.in_send -= 1;
        if let Some(settled) = Self::settle_early(&mut table, &self.stats, tracked.seq, peer, &request) {
            drop(table);
            self.after_acks(1, settled);
            return Ok(());
        }
        let mut first_sent = None;
        if tracked.seq < table.unchecked {
            let at = table.last_cut;
            first_sent = Some(at);
            let deadline = at + self.config.resend_timeout.min(self.config.give_up_after);
            let place = table.resends.partition_point(|&(due, ..)| due <= deadline);
            table.resends.insert(place, (deadline, tracked.seq, 1));
        }
        self.keep_sent(table, tracked.seq, request, first_sent, peer);
        Ok(())
    }

    /// At the hand-over of message `seq` (already taken off `in_send`):
    /// whether an ACK for it came early, from the peer it went to. If so it
    /// is settled here (`Some`, with whether nothing is pending now) and
    /// never enters the table; an early ACK with another tag, or from
    /// another peer, counts as unknown.
    fn settle_early(
        table: &mut Table,
        stats: &AtLeastOnceStats,
        seq: u64,
        peer: Option<PeerId>,
        request: &Message,
    ) -> Option<bool> {
        // The usual case: no ACK came early, and this is one check.
        if table.early_acks.is_empty() {
            return None;
        }
        let early = table.early_acks.remove(&seq);
        Self::forget_early_acks(table, stats);
        let (id, from) = early?;
        if request_id(request) != Some(id) || peer.is_some_and(|to| to != from) {
            stats.unknown_acks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(table.pending.is_empty() && table.in_send == 0)
    }

    /// Once no hand-over is due, an early ACK still kept can match nothing:
    /// it is dropped and counted as unknown.
    fn forget_early_acks(table: &mut Table, stats: &AtLeastOnceStats) {
        if table.in_send == 0 && !table.early_acks.is_empty() {
            stats.unknown_acks.fetch_add(table.early_acks.len() as u64, Ordering::Relaxed);
            table.early_acks.clear();
        }
    }

    /// After `acked` messages were acknowledged: counts them and wakes those
    /// waiting for room, and for no message pending (`settled`).
    pub(crate) fn after_acks(&self, acked: u64, settled: bool) {
        self.stats.acked.fetch_add(acked, Ordering::Relaxed);
        self.room_signal.notify_waiters();
        if settled {
            self.settled.notify_waiters();
        }
    }

    /// Messages sent to `peer` and not yet acknowledged.
    pub(crate) fn outstanding(&self, peer: PeerId) -> usize {
        self.table().outstanding(peer)
    }

    /// Message `seq`, resent at its `attempts`th send, went to `peer`.
    pub(crate) fn resent_to(&self, seq: u64, attempts: u32, peer: PeerId) {
        let mut table = self.table();
        if let Some(entry) = table.pending.get_mut(seq) {
            if entry.attempts == attempts && entry.peer.is_none() {
                entry.peer = Some(peer);
                table.hold(peer);
            }
        }
    }

    /// The resend of message `seq` at its `attempts`th send was not made
    /// (its peer is away): that send does not count. Its next deadline
    /// stands, and tries again.
    pub(crate) fn resend_not_made(&self, seq: u64, attempts: u32) {
        let mut table = self.table();
        let Some(entry) = table.pending.get_mut(seq) else { return };
        if entry.attempts != attempts || attempts <= 1 {
            return;
        }
        entry.attempts -= 1;
        // The deadline queued for that send is the one that stands now.
        for deadline in table.resends.iter_mut().filter(|(_, s, a)| *s == seq && *a == attempts) {
            deadline.2 = attempts - 1;
        }
    }

    /// Stops tracking a message tracked with `deferred` whose send failed;
    /// hands back the message as it was given (a DATA frame).
    pub(crate) fn untrack(&self, _tracked: Tracked, request: Message) -> Message {
        let settled = {
            let mut table = self.table();
            table.in_send -= 1;
            table.sent -= 1;
            self.stats.sent.store(table.sent, Ordering::Relaxed);
            Self::forget_early_acks(&mut table, &self.stats);
            table.pending.is_empty() && table.in_send == 0
        };
        self.room_signal.notify_waiters();
        if settled {
            self.settled.notify_waiters();
        }
        data_of(request)
    }

    pub(crate) fn forget(&self, seq: u64) {
        let mut table = self.table();
        let removed = table.pending.remove(seq);
        if let Some(entry) = &removed {
            table.release(entry.peer);
        }
        let empty = table.pending.is_empty();
        drop(table);
        // Its payload is freed after the lock.
        if removed.is_some() {
            self.room_signal.notify_waiters();
            if empty {
                self.settled.notify_waiters();
            }
        }
    }

    /// Takes an in-flight place now, if one is free.
    pub(crate) fn try_reserve(&self) -> bool {
        let mut table = self.table();
        if self.is_shut_down() || table.has_room(&self.config) {
            table.reserved += 1;
            true
        } else {
            false
        }
    }

    /// Gives back a place taken by `try_reserve` and never used.
    pub(crate) fn release(&self) {
        self.table().reserved -= 1;
        self.room_signal.notify_waiters();
    }

    /// Whether a send could be tracked now (or the sender is shut down, and
    /// a send fails at once).
    pub(crate) fn has_room(&self) -> bool {
        self.is_shut_down() || self.table().has_room(&self.config)
    }

    /// Completes when [`has_room`](Core::has_room) may be true.
    pub(crate) async fn room(&self) {
        loop {
            let room = self.room_signal.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }
}
