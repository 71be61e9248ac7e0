//! The queue of given-up messages kept for the application, bounded in
//! messages and in payload bytes: a reader that never looks must not make
//! the sender hold a gigabyte of 1 MiB messages it gave up on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::driver::Undelivered;

/// Why [`UndeliveredReceiver::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No given-up message is kept now.
    #[error("no given-up message is kept now")]
    Empty,
    /// None is kept, and none will be: the at-least-once sender has ended.
    #[error("the at-least-once sender has ended and every kept message was taken")]
    Closed,
}

/// Where [`Undelivered`] messages arrive, from
/// [`AtLeastOnceLayer::new`](crate::AtLeastOnceLayer::new).
///
/// It keeps at most
/// [`undelivered_capacity`](crate::AtLeastOnceConfig::undelivered_capacity)
/// messages, taken while their payloads come to fewer than
/// [`undelivered_bytes`](crate::AtLeastOnceConfig::undelivered_bytes)
/// bytes (each taken whole, so one large message may pass the mark); a
/// message given up past either mark is not kept, only counted
/// ([`AtLeastOnceStats::undelivered_not_kept`](crate::AtLeastOnceStats::undelivered_not_kept))
/// and reported as an event. Taking a message makes room for the next.
#[derive(Debug)]
pub struct UndeliveredReceiver {
    messages: mpsc::Receiver<Undelivered>,
    kept_bytes: Arc<AtomicUsize>,
}

impl UndeliveredReceiver {
    /// The next message given up; `None` once the sender has ended and
    /// every kept message has been taken.
    pub async fn recv(&mut self) -> Option<Undelivered> {
        let message = self.messages.recv().await?;
        Some(self.taken(message))
    }

    /// The next message given up, if one is kept now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if none is kept now,
    /// [`TryRecvError::Closed`] once the sender has ended and every kept
    /// message has been taken.
    pub fn try_recv(&mut self) -> Result<Undelivered, TryRecvError> {
        match self.messages.try_recv() {
            Ok(message) => Ok(self.taken(message)),
            Err(mpsc::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(TryRecvError::Closed),
        }
    }

    /// Polls for the next message given up, as [`recv`](Self::recv) does.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Undelivered>> {
        self.messages.poll_recv(cx).map(|message| message.map(|message| self.taken(message)))
    }

    fn taken(&self, message: Undelivered) -> Undelivered {
        self.kept_bytes.fetch_sub(payload_len(&message), Ordering::Relaxed);
        message
    }
}

/// The sender's end (the driver task gives up messages one at a time).
pub(crate) struct UndeliveredSender {
    messages: mpsc::Sender<Undelivered>,
    kept_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl UndeliveredSender {
    /// Keeps `message` for the application if both marks allow; false if
    /// it was not kept.
    pub(crate) fn offer(&self, message: Undelivered) -> bool {
        let len = payload_len(&message);
        // The one sender checks and adds; a reader only subtracts, so the
        // mark can only have moved further away in between.
        if self.kept_bytes.load(Ordering::Relaxed) >= self.max_bytes {
            return false;
        }
        self.kept_bytes.fetch_add(len, Ordering::Relaxed);
        if self.messages.try_send(message).is_err() {
            self.kept_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A queue for `capacity` messages, taken while fewer than `max_bytes`
/// payload bytes are kept.
pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (UndeliveredSender, UndeliveredReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    let kept_bytes = Arc::new(AtomicUsize::new(0));
    (
        UndeliveredSender { messages: tx, kept_bytes: kept_bytes.clone(), max_bytes },
        UndeliveredReceiver { messages: rx, kept_bytes },
    )
}

fn payload_len(message: &Undelivered) -> usize {
    message.message.frame.payload().len()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use smartsock_patterns::Message;
    use smartsock_transport::MsgId;

    use super::*;

    fn given_up(id: u8, len: usize) -> Undelivered {
        Undelivered {
            id: MsgId::from_bytes([id; 16]),
            message: Message::new(Bytes::from(vec![id; len])),
            attempts: 1,
        }
    }

    #[test]
    fn messages_are_kept_while_their_bytes_are_under_the_mark_then_one_more_makes_room() {
        let (tx, mut rx) = channel(100, 300);
        // 0, 100 and 200 bytes kept are under 300: three taken whole.
        for id in 0..3 {
            assert!(tx.offer(given_up(id, 100)), "message {id}");
        }
        // 300 kept: at the mark, the fourth is not.
        assert!(!tx.offer(given_up(3, 100)));
        // Taking one makes room for one.
        assert_eq!(rx.try_recv().unwrap().id, MsgId::from_bytes([0; 16]));
        assert!(tx.offer(given_up(4, 100)));
        assert!(!tx.offer(given_up(5, 1)));
        let ids: Vec<u8> =
            std::iter::from_fn(|| rx.try_recv().ok()).map(|u| u.message.frame.payload()[0]).collect();
        assert_eq!(ids, [1, 2, 4]);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    }

    #[test]
    fn one_message_larger_than_the_mark_is_kept_when_nothing_else_is() {
        let (tx, mut rx) = channel(100, 10);
        assert!(tx.offer(given_up(0, 1000)));
        assert!(!tx.offer(given_up(1, 0)));
        assert_eq!(rx.try_recv().unwrap().message.frame.payload().len(), 1000);
        assert!(tx.offer(given_up(2, 0)));
    }

    #[test]
    fn the_message_count_is_a_mark_too_and_a_refused_message_leaves_the_bytes_as_they_were() {
        let (tx, mut rx) = channel(2, 1000);
        assert!(tx.offer(given_up(0, 10)));
        assert!(tx.offer(given_up(1, 10)));
        assert!(!tx.offer(given_up(2, 10)));
        assert_eq!(tx.kept_bytes.load(Ordering::Relaxed), 20);
        rx.try_recv().unwrap();
        rx.try_recv().unwrap();
        assert_eq!(tx.kept_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_receiver_ends_once_the_sender_is_gone_and_everything_is_taken() {
        let (tx, mut rx) = channel(4, 1000);
        assert!(tx.offer(given_up(7, 3)));
        drop(tx);
        assert_eq!(rx.recv().await.unwrap().attempts, 1);
        assert!(rx.recv().await.is_none());
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Closed);
        assert_eq!(
            TryRecvError::Closed.to_string(),
            "the at-least-once sender has ended and every kept message was taken"
        );
    }
}
