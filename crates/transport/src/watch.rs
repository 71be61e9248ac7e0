//! [`PeerWatch`] and [`Events`]: the transport's own handles on its peer
//! table and its event stream, so that no channel crate's types are part of
//! its API.

use std::fmt;

use tokio::sync::{broadcast, watch};

use crate::event::Event;
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
pub struct Events(pub(crate) broadcast::Receiver<Event>);

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// This reader fell behind: the oldest events were overwritten. The
    /// next call goes on with the oldest event still kept.
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
        self.0.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => EventsError::Lagged(n),
            broadcast::error::RecvError::Closed => EventsError::Closed,
        })
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Result<Event, EventsError> {
        self.0.try_recv().map_err(|e| match e {
            broadcast::error::TryRecvError::Lagged(n) => EventsError::Lagged(n),
            broadcast::error::TryRecvError::Closed => EventsError::Closed,
            broadcast::error::TryRecvError::Empty => EventsError::Empty,
        })
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("waiting", &self.0.len()).finish()
    }
}
