//! [`ResponseFuture`]: the response of a [`PeerSet`](crate::PeerSet) send.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, Either, Ready, ready};

use crate::SendError;

type SendResult = Result<(), SendError>;

/// The response of a [`PeerSet`](crate::PeerSet) send: ready at once when
/// the frame went straight into an outbox (the usual case, with no
/// allocation), or waiting for room.
pub struct ResponseFuture {
    inner: Either<Ready<SendResult>, BoxFuture<'static, SendResult>>,
}

impl ResponseFuture {
    pub(crate) fn done(result: SendResult) -> Self {
        Self { inner: Either::Left(ready(result)) }
    }

    pub(crate) fn waiting(future: impl Future<Output = SendResult> + Send + 'static) -> Self {
        Self { inner: Either::Right(Box::pin(future)) }
    }

    /// Whether the send completed without waiting.
    pub fn is_done(&self) -> bool {
        matches!(self.inner, Either::Left(_))
    }
}

impl Future for ResponseFuture {
    type Output = SendResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SendResult> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
