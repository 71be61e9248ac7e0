//! [`Backlog`]: the messages held while no peer can take them, in send order.

use std::collections::{HashSet, VecDeque};
use std::task::Waker;

use smartsock_transport::{Frame, MsgId};

use crate::{Message, PeerSetConfig};

#[derive(Default)]
pub(crate) struct Backlog {
    queue: VecDeque<Message>,
    bytes: usize,
    /// The flusher has popped a message it has not delivered yet: new sends
    /// must still queue behind it to keep send order.
    pub(crate) in_flight: bool,
    /// Senders waiting for room.
    pub(crate) waiters: Vec<Waker>,
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
    /// Whether a message would be taken: below the message mark, and below
    /// the byte mark (so one message may pass it; none is taken after).
    pub(crate) fn has_room(&self, config: &PeerSetConfig) -> bool {
        self.queue.len() < config.buffer_capacity && self.bytes < config.buffer_bytes
    }

    /// Whether `message` is an at-least-once message already waiting here.
    pub(crate) fn holds(&self, message: &Message) -> bool {
        request_id(message).is_some_and(|id| self.requests.contains(&id))
    }

    /// Queues `message` unless it is already waiting here.
    pub(crate) fn push_back(&mut self, message: Message) {
        if let Some(id) = request_id(&message) {
            if !self.requests.insert(id) {
                return;
            }
        }
        self.bytes += message.payload().len();
        self.queue.push_back(message);
    }

    /// Puts `message` first in line, unless it is already waiting here.
    pub(crate) fn push_front(&mut self, message: Message) {
        if let Some(id) = request_id(&message) {
            if !self.requests.insert(id) {
                return;
            }
        }
        self.bytes += message.payload().len();
        self.queue.push_front(message);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Message> {
        let message = self.queue.pop_front()?;
        self.forget(&message);
        Some(message)
    }

    /// Takes out the at-least-once message `id`, if it is waiting here.
    pub(crate) fn withdraw(&mut self, id: MsgId) -> Option<Message> {
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
        self.wake_waiters();
    }

    pub(crate) fn wake_waiters(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }

    pub(crate) fn register(&mut self, waker: &Waker) {
        if !self.waiters.iter().any(|w| w.will_wake(waker)) {
            self.waiters.push(waker.clone());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.in_flight
    }
}
