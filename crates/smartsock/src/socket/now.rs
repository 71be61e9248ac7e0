//! Sending and receiving now or not at all, without async: for callers on
//! plain threads (`smartsock-blocking`) that should not enter a runtime for
//! a message that can go, or be taken, at once.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use smartsock_framing::PeerId;
use smartsock_patterns::{Destination, Message, Outcome, SendErrorKind, WhenFull};
use smartsock_transport::TryRecvError;

use super::Socket;
use super::send::{Tried, send_error};
use crate::Error;

impl Socket {
    /// Sends a message by the socket's send mode if that needs no waiting,
    /// without async: callable from any thread, with no runtime entered.
    ///
    /// Fails at once with `SendErrorKind::WouldWait`, handing the message
    /// back ([`Error::into_payload`]), whenever [`send`](Socket::send)
    /// would have to wait: the outboxes or the no-peer buffer it needs are
    /// full, at-least-once is at its in-flight limit, the socket has tower
    /// layers of the user's (their readiness is async), or the socket
    /// publishes under [`WhenFull::Wait`] (such a send may have to wait for
    /// a full subscriber after the others got their copy; it is refused
    /// before any copy is queued). Fails as `send` does otherwise.
    ///
    /// ```
    /// use smartsock::Socket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// // No peer, and room for one buffered message.
    /// let socket = Socket::builder().buffer(1, 1024).build()?;
    /// socket.send_now("first")?;
    /// let refused = socket.send_now("second").unwrap_err();
    /// assert_eq!(refused.into_payload().unwrap(), "second");
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_now(&self, message: impl Into<Bytes>) -> Result<(), Error> {
        self.dispatch_now(Message::new(message))
    }

    /// Like [`send_now`](Socket::send_now), to exactly the peer `to`, as
    /// [`send_to`](Socket::send_to) sends.
    pub fn send_to_now(&self, to: PeerId, message: impl Into<Bytes>) -> Result<(), Error> {
        self.dispatch_now(Message::to_peer(to, message))
    }

    /// The next message from any peer and its sender, if one is queued now,
    /// without async: [`TryRecvError::Empty`] if none is,
    /// [`TryRecvError::Closed`] once the socket is closed and every message
    /// received before has been taken. As [`recv_from`](Socket::recv_from),
    /// it acknowledges an at-least-once message and skips repeats.
    // Inlined into `recv_from`: returned through memory, the message was
    // written field by field and read back in 16-byte pieces that straddled
    // two fields (a store-forwarding stall, half of `recv_from`'s own time).
    #[inline]
    pub fn try_recv_from(&self) -> Result<(PeerId, Bytes), TryRecvError> {
        loop {
            let incoming = self.inner.inbound.try_recv()?;
            if let Some(message) = self.inner.receive.take(incoming) {
                return Ok(message);
            }
        }
    }

    /// The direct path of `send_direct`, one try, no wait.
    fn dispatch_now(&self, mut message: Message) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(send_error(SendErrorKind::Closed, message));
        }
        if message.to == Destination::Unresolved {
            message.to = self.inner.destination;
        }
        let waits_inside = matches!(message.to, Destination::Everyone { when_full: WhenFull::Wait });
        if self.inner.stack.is_some() || waits_inside {
            return Err(send_error(SendErrorKind::WouldWait, message));
        }
        match self.try_once(message) {
            Tried::Queued(Outcome::CopiesWaiting(_)) => {
                // Only a publish under `WhenFull::Wait` leaves copies to queue
                // later, and it never gets here.
                unreachable!("a copy left to queue later by a send that cannot wait")
            }
            Tried::Queued(_) => Ok(()),
            Tried::NoRoom(back) | Tried::AtInFlightLimit(back) => {
                Err(send_error(SendErrorKind::WouldWait, back))
            }
            Tried::Failed(error) => Err(error),
        }
    }
}
