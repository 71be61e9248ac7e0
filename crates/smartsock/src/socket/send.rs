//! The send path of [`Socket`]: the direct path (no lock, no tower) and the
//! tower stack's turn-taking for sockets with layers of the user's.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use smartsock_patterns::{Destination, Message, Outcome, SendError, SendErrorKind};
use smartsock_reliability::{AtLeastOnceHandle, Untracked, Went};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout, timeout_at};
use tower::{BoxError, Service};

use super::{SendStack, Socket};
use crate::Error;

impl Socket {
    /// A send's first step, taken without making a future: queued at once
    /// when the socket has no user layers and the queues have room (under
    /// at-least-once, tracked first), or else the rest of the send, boxed:
    /// it waits anyway. The message is only borrowed on the usual path, and
    /// the caller's future holds no more than the box across its wait, so it
    /// stays small: the usual `send` future is moved into its caller's, and
    /// when it was 416 bytes, moving it cost the sender a tenth of its time
    /// on 16-byte messages. `message.to` is resolved unless user layers do it.
    pub(super) fn send_message(&self, message: Message) -> FirstTry<'_> {
        if self.inner.stack.is_some() || self.inner.closed.load(Ordering::Acquire) {
            return self.rest_of_send(message);
        }
        if self.inner.tracker.is_none() {
            return match self.inner.peer_set.try_send_borrowed(&message) {
                Ok(Outcome::Sent(_)) => FirstTry::Sent,
                Ok(Outcome::WouldWait) => self.rest_of_send(message),
                Ok(copies @ Outcome::CopiesWaiting(_)) => FirstTry::Rest(Box::pin(finish(copies))),
                Err(kind) => FirstTry::Failed(send_error(kind, message)),
            };
        }
        match self.try_once(message) {
            Tried::Queued(copies @ Outcome::CopiesWaiting(_)) => FirstTry::Rest(Box::pin(finish(copies))),
            Tried::Queued(_) => FirstTry::Sent,
            Tried::Failed(error) => FirstTry::Failed(error),
            Tried::NoRoom(message) | Tried::AtInFlightLimit(message) => self.rest_of_send(message),
        }
    }

    /// The rest of a send that could not be queued at once: the whole way,
    /// waiting for room up to the send timeout.
    fn rest_of_send(&self, message: Message) -> FirstTry<'_> {
        let limit = self.inner.send_timeout;
        if self.inner.stack.is_none() && !self.inner.closed.load(Ordering::Acquire) {
            // Boxed on its own rather than inside `dispatch` (whose tower
            // branch makes it over 1 KiB): see `a_waiting_send_boxes_under_1_kib`.
            return FirstTry::Rest(Box::pin(self.send_direct(message, limit, SendErrorKind::TimedOut)));
        }
        FirstTry::Rest(Box::pin(self.dispatch(message, limit, SendErrorKind::TimedOut)))
    }

    /// Hands `message` to the send stack, waiting for room up to `limit`.
    pub(crate) async fn dispatch(
        &self,
        message: Message,
        limit: Option<Duration>,
        on_expiry: SendErrorKind,
    ) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(send_error(SendErrorKind::Closed, message));
        }
        let Some(stack) = &self.inner.stack else {
            return self.send_direct(message, limit, on_expiry).await;
        };
        let mut slot = Some(message);
        let sending = match limit {
            None => hand_over(stack, &mut slot).await?,
            // Boxed so that the usual send's future does not carry a timer.
            Some(limit) => match Box::pin(timeout(limit, hand_over(stack, &mut slot))).await {
                Ok(handed) => handed?,
                // Not handed over yet, so the message is still ours to give back.
                Err(_) => return Err(send_error(on_expiry, slot.take().expect("not handed over"))),
            },
        };
        sending.finish().await
    }

    /// The direct path: no lock, no tower, no task hand-off; the message
    /// goes straight into an outbox (or the no-peer buffer), tracked first
    /// under at-least-once. Waits only when it must, and a wait that runs
    /// out hands the message back.
    pub(super) async fn send_direct(
        &self,
        mut message: Message,
        limit: Option<Duration>,
        on_expiry: SendErrorKind,
    ) -> Result<(), Error> {
        if message.to == Destination::Unresolved {
            message.to = self.inner.destination;
        }
        // Read only if the send has to wait.
        let mut deadline = None;
        loop {
            let (ready, message_back) = match self.try_once(message) {
                Tried::Queued(outcome) => return finish(outcome).await,
                Tried::Failed(error) => return Err(error),
                Tried::AtInFlightLimit(back) => {
                    let reliable = self.inner.tracker.as_ref().expect("only at-least-once has a limit");
                    (within(reliable.room(), limit, &mut deadline).await, back)
                }
                Tried::NoRoom(back) => {
                    (within(self.inner.peer_set.room_for(&back), limit, &mut deadline).await, back)
                }
            };
            if !ready {
                return Err(send_error(on_expiry, message_back));
            }
            message = message_back;
        }
    }

    /// One try of the direct path, no wait: the message is queued (tracked
    /// first under at-least-once), or handed back with what it waits for.
    /// `message.to` must be resolved.
    pub(super) fn try_once(&self, message: Message) -> Tried {
        let peer_set = &self.inner.peer_set;
        let Some(reliable) = &self.inner.tracker else {
            // The queues take copies: the message stays here, and no message
            // value moves through the layers on the way.
            return match peer_set.try_send_borrowed(&message) {
                Ok(Outcome::WouldWait) => Tried::NoRoom(message),
                Ok(queued) => Tried::Queued(queued),
                Err(kind) => Tried::Failed(send_error(kind, message)),
            };
        };
        // A least-loaded route asks the sender for each peer's load, so it
        // cannot route under the sender's lock: track, send, hand over.
        if !peer_set.routes_by_load() {
            return self.try_once_tracked(reliable, message);
        }
        match reliable.try_track(message) {
            Ok((tracked, request)) => match peer_set.try_send_borrowed(&request) {
                Ok(Outcome::Sent(peer)) => match reliable.sent(tracked, peer, request) {
                    Ok(()) => Tried::Queued(Outcome::Sent(peer)),
                    Err(back) => Tried::Failed(send_error(SendErrorKind::Closed, back)),
                },
                Ok(Outcome::WouldWait) => Tried::NoRoom(reliable.untrack(tracked, request)),
                Ok(copies @ Outcome::CopiesWaiting(_)) => match reliable.sent(tracked, None, request) {
                    Ok(()) => Tried::Queued(copies),
                    // The copies still waiting are not queued: the socket is closing.
                    Err(back) => Tried::Failed(send_error(SendErrorKind::Closed, back)),
                },
                Err(kind) => Tried::Failed(send_error(kind, reliable.untrack(tracked, request))),
            },
            Err(back) if reliable.is_shut_down() => Tried::Failed(send_error(SendErrorKind::Closed, back)),
            Err(back) => Tried::AtInFlightLimit(back),
        }
    }
}

impl Socket {
    /// [`try_once`](Socket::try_once) under at-least-once, tracked and
    /// routed in one turn of the sender's lock.
    fn try_once_tracked(&self, reliable: &AtLeastOnceHandle, message: Message) -> Tried {
        // Only the rare outcomes are kept: writing a whole `Outcome` out of
        // the route on every send cost the sender a few percent.
        let mut failed = None;
        let mut copies = None;
        let tracked = reliable.try_send_tracked(message, |request| {
            match self.inner.peer_set.try_send_borrowed(request) {
                Ok(Outcome::Sent(peer)) => Went::Out(peer),
                // Publish is refused under at-least-once; were copies
                // waiting, the send would finish them.
                Ok(waiting @ Outcome::CopiesWaiting(_)) => {
                    copies = Some(waiting);
                    Went::Out(None)
                }
                Ok(Outcome::WouldWait) => Went::Nowhere,
                Err(kind) => {
                    failed = Some(kind);
                    Went::Nowhere
                }
            }
        });
        match tracked {
            // Which peer took it matters to no caller of `try_once`.
            Ok(()) => Tried::Queued(copies.unwrap_or(Outcome::Sent(None))),
            Err(Untracked::NotSent(back)) => match failed {
                Some(kind) => Tried::Failed(send_error(kind, back)),
                None => Tried::NoRoom(back),
            },
            Err(Untracked::NoRoom(back)) => Tried::AtInFlightLimit(back),
            Err(Untracked::Closed(back)) => Tried::Failed(send_error(SendErrorKind::Closed, back)),
            // The facade sends only DATA messages: not a case it meets.
            Err(other) => {
                let why = SendErrorKind::Refused("not tracked for at-least-once delivery");
                Tried::Failed(send_error(why, other.into_message()))
            }
        }
    }
}

/// What became of [`Socket::send_message`]: the send's result, or the rest
/// of it to await. Success is a variant of its own, not an `Ok(())` inside:
/// the caller then builds its own `Ok(())` instead of copying a whole
/// `Result<(), Error>` (over a hundred bytes, most never written on
/// success) whose tag was just stored, a store-forwarding stall on every
/// send.
pub(super) enum FirstTry<'a> {
    Sent,
    Failed(Error),
    Rest(BoxFuture<'a, Result<(), Error>>),
}

/// What became of [`Socket::try_once`].
pub(super) enum Tried {
    /// In the queues (a publish may still have copies to queue).
    Queued(Outcome),
    /// Not queued: the outboxes (or the no-peer buffer) it needs are full.
    NoRoom(Message),
    /// Not queued: at-least-once is at its in-flight limit.
    AtInFlightLimit(Message),
    /// It can never go; the error holds the message.
    Failed(Error),
}

/// The end of a send whose message is queued: at once, or once a publish's
/// copies for full subscribers are queued.
pub(super) async fn finish(outcome: Outcome) -> Result<(), Error> {
    match outcome {
        Outcome::CopiesWaiting(copies) => Ok(copies.await?),
        Outcome::Sent(_) | Outcome::WouldWait => Ok(()),
    }
}

/// Waits for room, in turn with other senders (first come, first served),
/// then hands the message over. Tower services keep one waker for
/// readiness, so only one task may wait on the stack at a time; the turn
/// ends before the send's own future is awaited.
async fn hand_over(stack: &Mutex<SendStack>, slot: &mut Option<Message>) -> Result<Sending, Error> {
    let mut stack = stack.lock().await;
    std::future::poll_fn(|cx| match poll_hand_over(&mut stack, cx, slot) {
        Ok(Some(sending)) => Poll::Ready(Ok(sending)),
        Ok(None) => Poll::Pending,
        Err(e) => Poll::Ready(Err(e)),
    })
    .await
}

/// One look at the stack: if it is ready, takes the message out of `slot`
/// and calls, so the message leaves `slot` only once nothing can fail before
/// the call.
fn poll_hand_over(
    stack: &mut SendStack,
    cx: &mut Context<'_>,
    slot: &mut Option<Message>,
) -> Result<Option<Sending>, Error> {
    let take = |slot: &mut Option<Message>| slot.take().expect("message handed over once");
    Ok(match stack {
        SendStack::AtLeastOnce(service) => match service.poll_ready(cx)? {
            Poll::Ready(()) => Some(Sending::Reliable(service.call(take(slot)))),
            Poll::Pending => None,
        },
        SendStack::Custom(service) => match service.poll_ready(cx).map_err(from_layer)? {
            Poll::Ready(()) => Some(Sending::Custom(service.call(take(slot)))),
            Poll::Pending => None,
        },
    })
}

/// A message handed over to the stack, on its way into the peers' queues.
enum Sending {
    Reliable(smartsock_reliability::ResponseFuture<smartsock_patterns::ResponseFuture>),
    Custom(BoxFuture<'static, Result<(), BoxError>>),
}

impl Sending {
    async fn finish(self) -> Result<(), Error> {
        match self {
            Self::Reliable(sending) => Ok(sending.await?),
            Self::Custom(sending) => sending.await.map_err(from_layer),
        }
    }
}

/// Waits for `ready` within what is left of `limit` (counted from the first
/// wait of a send); false if the time ran out first.
async fn within(
    ready: impl Future<Output = ()>,
    limit: Option<Duration>,
    deadline: &mut Option<Instant>,
) -> bool {
    match limit {
        None => {
            ready.await;
            true
        }
        Some(limit) if limit.is_zero() => false,
        Some(limit) => {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + limit);
            // Boxed so that the usual send's future does not carry a timer.
            Box::pin(timeout_at(deadline, ready)).await.is_ok()
        }
    }
}

pub(super) fn send_error(kind: SendErrorKind, message: Message) -> Error {
    SendError::new(kind, message).into()
}

/// Errors from below user layers are `SendError`s with the message inside:
/// keep them so.
fn from_layer(error: BoxError) -> Error {
    match error.downcast::<SendError>() {
        Ok(send) => (*send).into(),
        Err(other) => crate::ErrorKind::Layer(other).into(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use smartsock_framing::PeerId;

    use super::*;

    /// The usual send's (and receive's) future is moved into its caller's
    /// future: it must hold no more than the socket, the payload and the box
    /// of a send that waits. (At 416 bytes, moving it was a tenth of the
    /// sender's time on 16-byte messages.)
    #[tokio::test]
    async fn send_and_recv_futures_stay_small() {
        let socket = Socket::new().unwrap();
        let send = socket.send(Bytes::from_static(b"x"));
        assert!(size_of_val(&send) <= 64, "send: {} bytes", size_of_val(&send));
        let send_to = socket.send_to(PeerId::from_bytes([1; 16]), Bytes::from_static(b"x"));
        assert!(size_of_val(&send_to) <= 96, "send_to: {} bytes", size_of_val(&send_to));
        let recv = socket.recv();
        assert!(size_of_val(&recv) <= 96, "recv: {} bytes", size_of_val(&recv));
    }

    /// A send that has to wait boxes the rest of its work. That box must
    /// stay under 1 KiB: glibc's allocator serves blocks up to about 1 KiB
    /// from per-thread caches, and each larger request first merges every
    /// freed small block of the thread into its bins. With the box at
    /// 1,040 bytes, an at-least-once sender waiting for room at its
    /// in-flight limit did that merge 2,700 times a second (6 at 800).
    #[tokio::test]
    async fn a_waiting_send_boxes_under_1_kib() {
        let socket = Socket::new().unwrap();
        let message = Message::new(Bytes::from_static(b"x"));
        let FirstTry::Rest(rest) = socket.rest_of_send(message) else {
            panic!("the rest of a send is boxed")
        };
        let size = size_of_val(&*rest);
        assert!(size < 1000, "the boxed rest of a send: {size} bytes");
    }
}
