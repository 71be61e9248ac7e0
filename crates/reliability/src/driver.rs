//! The one background task of an [`AtLeastOnceLayer`](crate::AtLeastOnceLayer):
//! the pending table, its timers, ACKs, resends and give-ups.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smartsock_patterns::{Destination, Message, SendError};
use smartsock_transport::{AckReceiver, DropReason, Event, Frame, MsgId, Transport};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};
use tower::{Service, ServiceExt};
use tracing::{debug, warn};

use crate::AtLeastOnceConfig;

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

/// Where [`Undelivered`] messages arrive; bounded by
/// [`AtLeastOnceConfig::undelivered_capacity`].
pub type UndeliveredReceiver = mpsc::Receiver<Undelivered>;

pub(crate) enum Command {
    Track { id: MsgId, message: Message, permit: OwnedSemaphorePermit },
    Forget(MsgId),
}

/// Counters of an at-least-once sender.
#[derive(Debug, Default)]
pub struct AtLeastOnceStats {
    sent: AtomicU64,
    resent: AtomicU64,
    acked: AtomicU64,
    undelivered: AtomicU64,
    undelivered_not_kept: AtomicU64,
}

impl AtLeastOnceStats {
    /// Messages sent for the first time.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Sends after the first.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Messages acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Messages given up.
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }

    /// Given-up messages that found the undelivered queue full (reported as
    /// events and counted here, but not kept).
    pub fn undelivered_not_kept(&self) -> u64 {
        self.undelivered_not_kept.load(Ordering::Relaxed)
    }
}

/// State shared by the services of one layer and its driver.
pub(crate) struct Core {
    pub(crate) config: AtLeastOnceConfig,
    pub(crate) in_flight: Arc<Semaphore>,
    salt: u64,
    counter: AtomicU64,
    pub(crate) stats: AtLeastOnceStats,
    settled: Notify,
    shutdown: CancellationToken,
}

impl Core {
    /// The shared state, and the command channel: its senders belong to the
    /// services and the layer only, so that the driver sees the channel
    /// close (and ends) once they are all dropped.
    pub(crate) fn new(
        config: AtLeastOnceConfig,
    ) -> (Arc<Self>, mpsc::Sender<Command>, mpsc::Receiver<Command>) {
        // Tracks are bounded by the in-flight permits they carry; the extra
        // room is for the `Forget`s of sends that failed. A channel cannot be
        // larger than a semaphore, whatever `max_in_flight` validation allows.
        let capacity = config.max_in_flight.saturating_mul(2).min(Semaphore::MAX_PERMITS);
        let (commands, receiver) = mpsc::channel(capacity);
        let core = Arc::new(Self {
            config,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            salt: rand::random(),
            counter: AtomicU64::new(0),
            stats: AtLeastOnceStats::default(),
            settled: Notify::new(),
            shutdown: CancellationToken::new(),
        });
        (core, commands, receiver)
    }

    /// A fresh id: a random per-sender salt and a counter. Unique for this
    /// sender, unguessable across senders, and costs one atomic add.
    pub(crate) fn next_id(&self) -> MsgId {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.salt.to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
        MsgId::from_bytes(bytes)
    }
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
        self.core.config.max_in_flight - self.core.in_flight.available_permits()
    }

    /// The counters.
    pub fn stats(&self) -> &AtLeastOnceStats {
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
        self.core.shutdown.cancel();
    }
}

struct Pending {
    message: Message,
    attempts: u32,
    first_sent: Instant,
    timer: delay_queue::Key,
    _permit: OwnedSemaphorePermit,
}

/// Called with the id of each message given up, before it is handed back.
pub(crate) type GiveUpHook = Box<dyn Fn(MsgId) + Send + Sync>;

pub(crate) struct DriverParts {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) acks: AckReceiver,
    pub(crate) undelivered: mpsc::Sender<Undelivered>,
    pub(crate) events: Option<Transport>,
    pub(crate) on_give_up: Option<GiveUpHook>,
}

pub(crate) async fn drive<S>(core: Arc<Core>, mut inner: S, parts: DriverParts)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let DriverParts { mut commands, mut acks, undelivered, events, on_give_up } = parts;
    let give_up = |id, entry| give_up(&core, &undelivered, events.as_ref(), on_give_up.as_deref(), id, entry);
    let config = core.config;
    let mut pending: HashMap<MsgId, Pending> = HashMap::new();
    let mut timers: DelayQueue<MsgId> = DelayQueue::new();
    let mut senders_gone = false;
    loop {
        let had_pending = !pending.is_empty();
        tokio::select! {
            biased;
            () = core.shutdown.cancelled() => break,
            command = commands.recv(), if !senders_gone => match command {
                Some(command) => apply(&core, &mut pending, &mut timers, command),
                None => senders_gone = true,
            },
            Some((peer, id)) = acks.recv() => {
                if let Some(entry) = pending.remove(&id) {
                    timers.try_remove(&entry.timer);
                    core.stats.acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    debug!(%peer, %id, "ignoring an ACK for no pending message");
                }
            }
            Some(expired) = futures::future::poll_fn(|cx| timers.poll_expired(cx)), if !timers.is_empty() => {
                let id = expired.into_inner();
                let Some(entry) = pending.get_mut(&id) else { continue };
                let out_of_time = entry.first_sent.elapsed() >= config.give_up_after;
                if entry.attempts >= config.max_attempts || out_of_time {
                    let entry = pending.remove(&id).expect("entry present");
                    give_up(id, entry);
                } else {
                    entry.attempts += 1;
                    let time_left = config.give_up_after.saturating_sub(entry.first_sent.elapsed());
                    entry.timer = timers.insert(id, config.resend_timeout.min(time_left));
                    core.stats.resent.fetch_add(1, Ordering::Relaxed);
                    let message = entry.message.clone();
                    debug!(%id, attempt = entry.attempts, "resending");
                    resend(&mut inner, message, config.resend_timeout).await;
                }
            }
        }
        if pending.is_empty() {
            // Waiters are woken as the table empties, not on every pass.
            if had_pending {
                core.settled.notify_waiters();
            }
            if senders_gone {
                break;
            }
        }
    }
    // Sends accepted before the shutdown that the loop did not reach yet are
    // handed back too (nothing is given up silently); later sends fail at once.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        apply(&core, &mut pending, &mut timers, command);
    }
    for (id, entry) in pending.drain() {
        give_up(id, entry);
    }
    core.settled.notify_waiters();
}

/// Starts tracking a message that was just sent, or forgets one whose send failed.
fn apply(
    core: &Core,
    pending: &mut HashMap<MsgId, Pending>,
    timers: &mut DelayQueue<MsgId>,
    command: Command,
) {
    let config = core.config;
    match command {
        Command::Track { id, message, permit } => {
            core.stats.sent.fetch_add(1, Ordering::Relaxed);
            // Taken before the timer is set, so that when it fires the
            // elapsed time has surely reached `give_up_after` if it was due.
            let first_sent = Instant::now();
            let timer = timers.insert(id, config.resend_timeout.min(config.give_up_after));
            pending.insert(id, Pending { message, attempts: 1, first_sent, timer, _permit: permit });
        }
        Command::Forget(id) => {
            if let Some(entry) = pending.remove(&id) {
                timers.try_remove(&entry.timer);
            }
        }
    }
}

/// Sends again through the routing below, bounded in time so that a stuck
/// route cannot stop ACKs from being processed for long.
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
        // The attempt still counts; the next timer tries again or gives up.
        Ok(Err(e)) => debug!(error = %e, "resend failed"),
        Err(_) => debug!("resend could not be queued in time"),
    }
}

fn give_up(
    core: &Core,
    undelivered: &mpsc::Sender<Undelivered>,
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
    if undelivered.try_send(report).is_err() {
        core.stats.undelivered_not_kept.fetch_add(1, Ordering::Relaxed);
    }
}

/// Turns a DATA message into a DATA_REQ with `id`; other frames are left as they are.
pub(crate) fn as_request(frame: Frame, id: MsgId) -> Frame {
    match frame {
        Frame::Data(payload) => Frame::DataReq { id, payload },
        other => other,
    }
}
