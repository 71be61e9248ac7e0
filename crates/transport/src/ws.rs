//! WebSocket (feature `ws`): the protocol's byte stream inside binary
//! WebSocket messages (RFC 6455), as PROTOCOL.md describes. [`WsIo`] turns a
//! `tokio-tungstenite` stream back into `AsyncRead + AsyncWrite`, so the
//! connection code is the same as over TCP.
//!
//! Message boundaries mean nothing: binary payloads are concatenated. A text
//! message is refused with close code 1003, an unmasked client frame with
//! 1002, a message over the limit with 1009 (before its payload is read).
//! Pings are answered by tungstenite on the next read, which the connection's
//! reader always has pending. Liveness is the protocol's heartbeats only.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Largest WebSocket message this end sends: a batch of frames bigger than
/// this goes out as several messages, so that peers with a small message
/// limit (Python `websockets` defaults to 1 MiB) still take it.
pub(crate) const MAX_SENT_MESSAGE: usize = 64 * 1024;

/// The tungstenite settings for a connection whose protocol frames may be
/// up to `max_frame_length` long (the envelope; plus its 4-byte prefix).
pub(crate) fn config(max_frame_length: usize) -> WebSocketConfig {
    let limit = max_frame_length.saturating_add(4);
    WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        // Each message is written when sent (the connection batches
        // already), so nothing accumulates in tungstenite's buffer.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_SENT_MESSAGE * 4)
        // Checked against the header, before the payload is read.
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit))
        .accept_unmasked_frames(false)
}

/// Accepts the upgrade request on `stream` (its first bytes, `GET ...`):
/// no subprotocol and no extension are agreed to, whatever the client asks.
/// tungstenite bounds the request itself (64 KiB, 512 reads); the caller
/// bounds the time.
pub(crate) async fn accept<S>(stream: S, max_frame_length: usize) -> Result<WsIo<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // With no header callback, the response carries no
    // Sec-WebSocket-Protocol and no Sec-WebSocket-Extensions: nothing is
    // negotiated.
    tokio_tungstenite::accept_async_with_config(stream, Some(config(max_frame_length)))
        .await
        .map(WsIo::new)
        .map_err(|e| match e {
            WsError::AttackAttempt => "the upgrade request is too large".to_owned(),
            other => format!("upgrade failed: {other}"),
        })
}

/// Sends the upgrade request for `url` (`ws://host:port/path`) over
/// `stream`, already connected (and, for `wss://`, inside TLS).
pub(crate) async fn connect<S>(url: &str, stream: S, max_frame_length: usize) -> io::Result<WsIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config(max_frame_length)))
            .await
            .map_err(|e| io::Error::other(format!("WebSocket upgrade of {url} failed: {e}")))?;
    Ok(WsIo::new(ws))
}

/// A WebSocket stream read and written as bytes.
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The rest of the binary message being read.
    unread: Bytes,
    /// A close frame to send before reporting why the stream failed.
    failing: Option<Failing>,
    eof: bool,
}

struct Failing {
    frame: Option<CloseFrame>,
    error: io::Error,
}

impl<S> WsIo<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Self { ws, unread: Bytes::new(), failing: None, eof: false }
    }

    fn fail(&mut self, code: CloseCode, why: String) {
        let error = io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {why}"));
        self.failing = Some(Failing { frame: Some(CloseFrame { code, reason: "".into() }), error });
    }
}

impl<S> WsIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends the pending close frame (once), then hands out the error.
    fn poll_failing(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(failing) = self.failing.as_mut() else {
            return Poll::Ready(io::Error::other("no failure"));
        };
        if let Some(frame) = failing.frame.take() {
            let mut ws = Pin::new(&mut self.ws);
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    // Best effort: a peer that broke the protocol gets the
                    // code if the socket takes it.
                    let _ = ws.as_mut().start_send(Message::Close(Some(frame)));
                }
                Poll::Ready(Err(_)) => {}
                Poll::Pending => {
                    failing.frame = Some(frame);
                    return Poll::Pending;
                }
            }
        }
        if Pin::new(&mut self.ws).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        let failing = self.failing.as_ref().map(|f| io::Error::new(f.error.kind(), f.error.to_string()));
        Poll::Ready(failing.unwrap_or_else(|| io::Error::other("WebSocket failed")))
    }
}

impl<S> AsyncRead for WsIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.failing.is_some() {
                return Poll::Ready(Err(ready!(this.poll_failing(cx))));
            }
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(payload))) => this.unread = payload,
                Some(Ok(Message::Text(_))) => {
                    this.fail(CloseCode::Unsupported, "a text message (the protocol is binary only)".into());
                }
                // Pongs are answered by tungstenite itself on this same read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                // The TCP stream ended without a WebSocket close: for the
                // byte stream carried inside, that is its end, as a FIN is
                // on raw TCP (a peer that drops the connection after our
                // close frame confirms our end this way).
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => this.eof = true,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    this.fail(
                        CloseCode::Size,
                        format!("a message of {size} bytes, over the limit of {max_size}"),
                    );
                }
                Some(Err(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient))) => {
                    this.fail(CloseCode::Protocol, "an unmasked frame from the client".into());
                }
                Some(Err(WsError::Protocol(error))) => this.fail(CloseCode::Protocol, error.to_string()),
                Some(Err(WsError::Io(error))) => return Poll::Ready(Err(error)),
                Some(Err(error)) => this.fail(CloseCode::Protocol, error.to_string()),
            }
        }
    }
}

impl<S> AsyncWrite for WsIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_SENT_MESSAGE);
        ws.start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_in_binary_messages_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut io = accept(a, 1024).await.unwrap();
            let mut got = [0u8; 5];
            io.read_exact(&mut got).await.unwrap();
            io.write_all(b"world").await.unwrap();
            io.flush().await.unwrap();
            got
        });
        let mut client = connect("ws://localhost:1/x", b, 1024).await.unwrap();
        client.write_all(b"hel").await.unwrap();
        client.write_all(b"lo").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");
        assert_eq!(&server.await.unwrap(), b"hello");
    }
}
