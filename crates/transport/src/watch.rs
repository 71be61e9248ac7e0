//! [`PeerWatch`] and [`Events`]: the transport's own handles on its peer
//! table and its event stream, so that no channel crate's types are part of
//! its API.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use smartsock_framing::PeerId;
use tokio::sync::{Notify, watch};

use crate::event::{DropReason, Event};
use crate::peer::PeerTable;

/// The peer table as it changes, from [`Transport::peers`](crate::Transport::peers).
#[derive(Clone)]
pub struct PeerWatch(pub(crate) watch::Receiver<PeerTable>);

/// The transport has gone: no change will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the transport has gone")]
pub struct TransportGone;

impl PeerWatch {
    /// The peers now.
    pub fn now(&self) -> PeerTable {
        self.0.borrow().clone()
    }

    /// The peers now, marking this table seen (so [`changed`](PeerWatch::changed)
    /// waits for the next one).
    pub fn now_and_seen(&mut self) -> PeerTable {
        self.0.borrow_and_update().clone()
    }

    /// Whether the table changed since it was last seen.
    pub fn has_changed(&self) -> bool {
        self.0.has_changed().unwrap_or(true)
    }

    /// Waits for a table not seen yet.
    pub async fn changed(&mut self) -> Result<(), TransportGone> {
        self.0.changed().await.map_err(|_| TransportGone)
    }

    /// Waits until `ready` holds for the table, and returns that table.
    pub async fn wait_for(
        &mut self,
        mut ready: impl FnMut(&PeerTable) -> bool,
    ) -> Result<PeerTable, TransportGone> {
        self.0.wait_for(|table| ready(table)).await.map(|table| table.clone()).map_err(|_| TransportGone)
    }
}

impl fmt::Debug for PeerWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerWatch").field("peers", &self.0.borrow().len()).finish()
    }
}

/// A stream of [`Event`]s, from [`Transport::events`](crate::Transport::events).
///
/// Each stream has its own queue of at most
/// [`event_capacity`](crate::TransportConfig::event_capacity) connection
/// events (all but `Dropped`): past it, the oldest is overwritten and the
/// stream is told with [`EventsError::Lagged`]. Drops are kept apart, as one
/// tally per peer and [`DropReason`](crate::DropReason): a drop adds its count
/// to the unread `Dropped` event of its peer and reason if there is one, so a
/// flood of drops (one per message) takes one place, never pushes out a
/// connection event, and comes out where its first drop happened in the
/// order of events. At most `event_capacity` tallies wait at once; a drop
/// for yet another peer past that is counted as missed (the socket's stats
/// count every drop).
pub struct Events(pub(crate) Arc<Subscriber>);

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// This reader fell behind: that many events were overwritten or not
    /// kept. The next call goes on with the oldest event still kept.
    #[error("fell behind: {0} events were missed")]
    Lagged(u64),
    /// The transport has gone.
    #[error("the transport has gone")]
    Closed,
    /// ([`Events::try_recv`] only) no event is waiting now.
    #[error("no event is waiting")]
    Empty,
}

impl Events {
    /// The next event.
    pub async fn recv(&mut self) -> Result<Event, EventsError> {
        loop {
            match self.try_recv() {
                Err(EventsError::Empty) => {}
                other => return other,
            }
            // One stream per subscriber: `notify_one` keeps a permit for an
            // event pushed between the look above and this wait.
            self.0.notify.notified().await;
        }
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Result<Event, EventsError> {
        self.0.lock().pop()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.0.lock();
        f.debug_struct("Events").field("waiting", &(queue.events.len() + queue.drops.len())).finish()
    }
}

/// Hands every event to each live [`Events`] stream's own queue.
pub(crate) struct EventHub {
    capacity: usize,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
}

impl EventHub {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, subscribers: Mutex::new(Vec::new()) }
    }

    pub(crate) fn subscribe(&self) -> Events {
        let subscriber =
            Arc::new(Subscriber { queue: Mutex::new(Queue::new(self.capacity)), notify: Notify::new() });
        self.lock().push(subscriber.clone());
        Events(subscriber)
    }

    pub(crate) fn emit(&self, event: Event) {
        let mut subscribers = self.lock();
        // A stream that was dropped leaves the hub holding the last reference.
        subscribers.retain(|subscriber| Arc::strong_count(subscriber) > 1);
        for subscriber in subscribers.iter() {
            subscriber.lock().push(event.clone());
            subscriber.notify.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        // The transport has gone: streams take what is left, then the end.
        for subscriber in self.lock().iter() {
            subscriber.lock().closed = true;
            subscriber.notify.notify_one();
        }
    }
}

pub(crate) struct Subscriber {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No code path leaves the queue half-changed on a panic.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type DropKey = (Option<PeerId>, DropReason);

/// One stream's events: connection events, and drop tallies kept apart so
/// that drops cannot push connection events out. A sequence number keeps
/// the two in the order they happened.
struct Queue {
    capacity: usize,
    next: u64,
    events: VecDeque<(u64, Event)>,
    /// Unread drop tallies in order of their first drop; their counts are
    /// in `tallies`.
    drops: VecDeque<(u64, DropKey)>,
    tallies: HashMap<DropKey, u64>,
    missed: u64,
    closed: bool,
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next: 0,
            events: VecDeque::new(),
            drops: VecDeque::new(),
            tallies: HashMap::new(),
            missed: 0,
            closed: false,
        }
    }

    fn push(&mut self, event: Event) {
        if let Event::Dropped { peer, count, reason } = event {
            let key = (peer, reason);
            if let Some(tally) = self.tallies.get_mut(&key) {
                *tally = tally.saturating_add(count);
            } else if self.drops.len() < self.capacity {
                self.tallies.insert(key, count);
                self.drops.push_back((self.next, key));
                self.next += 1;
            } else {
                self.missed += 1;
            }
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.missed += 1;
        }
        self.events.push_back((self.next, event));
        self.next += 1;
    }

    fn pop(&mut self) -> Result<Event, EventsError> {
        if self.missed > 0 {
            return Err(EventsError::Lagged(std::mem::take(&mut self.missed)));
        }
        let event_first = match (self.events.front(), self.drops.front()) {
            (Some((event, _)), Some((drop, _))) => event < drop,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => {
                return Err(if self.closed { EventsError::Closed } else { EventsError::Empty });
            }
        };
        if event_first {
            let (_, event) = self.events.pop_front().expect("looked at");
            return Ok(event);
        }
        let (_, key) = self.drops.pop_front().expect("looked at");
        let count = self.tallies.remove(&key).expect("every unread drop has its tally");
        let (peer, reason) = key;
        Ok(Event::Dropped { peer, count, reason })
    }
}
