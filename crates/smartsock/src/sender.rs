//! [`Sender`]: a socket's send side as a `futures::Sink` and a `tower::Service`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Sink;
use futures::future::BoxFuture;

use crate::{Error, Socket};

/// The send side of a [`Socket`], for code written against `futures::Sink`
/// or `tower::Service`. Made by [`Socket::sender`]; each message is sent by
/// the socket's send mode, one at a time (the sink is ready again once the
/// previous message is queued).
///
/// ```
/// use futures::SinkExt;
/// use smartsock::Socket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), smartsock::Error> {
/// let server = Socket::new()?;
/// let addr = server.bind("127.0.0.1:0").await?;
/// let client = Socket::new()?;
/// client.connect(&addr.to_string())?;
///
/// let mut sink = client.sender();
/// sink.send("one".into()).await?;
/// sink.send("two".into()).await?;
/// assert_eq!(server.recv().await.unwrap(), "one");
/// assert_eq!(server.recv().await.unwrap(), "two");
/// # Ok(())
/// # }
/// ```
pub struct Sender {
    socket: Socket,
    sending: Option<BoxFuture<'static, Result<(), Error>>>,
}

impl Clone for Sender {
    /// Another sender on the same socket, with no send of its own in progress.
    fn clone(&self) -> Self {
        self.socket.sender()
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("socket", &self.socket).field("busy", &self.sending.is_some()).finish()
    }
}

impl Socket {
    /// The send side as a `Sink<Bytes>` and a `tower::Service<Bytes>`.
    pub fn sender(&self) -> Sender {
        Sender { socket: self.clone(), sending: None }
    }
}

impl Sender {
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(sending) = self.sending.as_mut() {
            let result = ready!(sending.as_mut().poll(cx));
            self.sending = None;
            result?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Bytes> for Sender {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_sent(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Bytes) -> Result<(), Error> {
        let this = self.get_mut();
        let socket = this.socket.clone();
        this.sending = Some(Box::pin(async move { socket.send(message).await }));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_sent(cx)
    }
}

impl tower::Service<Bytes> for Sender {
    type Response = ();
    type Error = Error;
    type Future = BoxFuture<'static, Result<(), Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Backpressure happens inside each send's future: the socket waits
        // for room there, in order.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: Bytes) -> Self::Future {
        let socket = self.socket.clone();
        Box::pin(async move { socket.send(message).await })
    }
}
