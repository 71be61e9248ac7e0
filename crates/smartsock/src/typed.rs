//! [`TypedSocket`]: a view of a [`Socket`] that sends and receives values of
//! one type through a [`Codec`], and its [`TypedSender`] sink.
//!
//! Built only on the socket's public API (`send`, `send_to`, `recv_from`,
//! `identity_messages`, `sender`): a typed message is an ordinary message
//! whose payload the codec wrote, so typed and untyped ends interoperate,
//! and every guarantee of the socket (send modes, buffering, at-least-once)
//! applies unchanged.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Sink, StreamExt};

use crate::codec::{Codec, DecodeError, EncodeError};
use crate::{Error, PeerId, Sender, Socket};

/// A [`Socket`] that sends and receives `T`, encoded by the codec `C`.
///
/// Made by [`Socket::typed`] (for a codec with a `Default`, as every codec of
/// this crate) or [`Socket::typed_with`]. It is a view: cheap to clone, and
/// the socket underneath stays usable for raw messages and for other types.
///
/// A payload that does not decode is a [`DecodeError`] naming the peer and
/// holding the bytes; it does not end anything, and the next receive gets
/// the next message.
///
/// ```
/// # #[cfg(feature = "json")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), smartsock::Error> {
/// use serde::{Deserialize, Serialize};
/// use smartsock::{Json, Socket};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Order { id: u64, item: String }
///
/// let shop = Socket::new()?;
/// let addr = shop.bind("127.0.0.1:0").await?;
/// let customer = Socket::new()?;
/// customer.connect(&addr.to_string())?;
///
/// let orders = customer.typed::<Order, Json>();
/// orders.send(&Order { id: 1, item: "tea".into() }).await?;
///
/// let incoming = shop.typed::<Order, Json>();
/// let (from, order) = incoming.recv_from().await.expect("open")?;
/// assert_eq!(from, customer.identity());
/// assert_eq!(order, Order { id: 1, item: "tea".into() });
///
/// // Anything else arriving is an error that hands the bytes back...
/// customer.send("not an order").await?;
/// let error = incoming.recv().await.expect("open").unwrap_err();
/// assert_eq!(error.peer(), customer.identity());
/// assert_eq!(error.into_payload(), "not an order");
/// // ...and the next message still arrives.
/// orders.send(&Order { id: 2, item: "cake".into() }).await?;
/// assert_eq!(incoming.recv().await.expect("open")?.id, 2);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "json"))]
/// # fn main() {}
/// ```
pub struct TypedSocket<T, C> {
    socket: Socket,
    codec: C,
    // `fn(T) -> T`: the view sends and yields `T` but owns none, so it is
    // `Send` and `Sync` whatever `T` is.
    _type: PhantomData<fn(T) -> T>,
}

impl Socket {
    /// A view of this socket that sends and receives `T` through the codec
    /// `C` (`socket.typed::<Order, Json>()`).
    pub fn typed<T, C: Codec<T> + Default>(&self) -> TypedSocket<T, C> {
        self.typed_with(C::default())
    }

    /// Like [`typed`](Socket::typed), with a codec value (one that carries
    /// settings, or has no `Default`).
    pub fn typed_with<T, C: Codec<T>>(&self, codec: C) -> TypedSocket<T, C> {
        TypedSocket { socket: self.clone(), codec, _type: PhantomData }
    }
}

impl<T, C: Codec<T>> TypedSocket<T, C> {
    /// Encodes `value` and sends it by the socket's send mode
    /// ([`Socket::send`]). An encoding failure is of kind
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode), before anything is
    /// queued; a failed send hands back the encoded payload
    /// ([`Error::into_payload`]).
    pub async fn send(&self, value: &T) -> Result<(), Error> {
        self.socket.send(encode(&self.codec, value)?).await
    }

    /// Encodes `value` and sends it to exactly the peer `to`
    /// ([`Socket::send_to`]).
    pub async fn send_to(&self, to: PeerId, value: &T) -> Result<(), Error> {
        self.socket.send_to(to, encode(&self.codec, value)?).await
    }

    /// The next message, decoded. `None` once the socket is closed and
    /// drained; `Some(Err(_))` for a payload that did not decode.
    pub async fn recv(&self) -> Option<Result<T, DecodeError>> {
        Some(self.recv_from().await?.map(|(_, value)| value))
    }

    /// Like [`recv`](TypedSocket::recv), with the sender's identity (to
    /// answer it with [`send_to`](TypedSocket::send_to)).
    pub async fn recv_from(&self) -> Option<Result<(PeerId, T), DecodeError>> {
        let (from, payload) = self.socket.recv_from().await?;
        Some(decode(&self.codec, from, payload).map(|value| (from, value)))
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &Socket {
        &self.socket
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The socket underneath, giving up the view.
    pub fn into_inner(self) -> Socket {
        self.socket
    }
}

impl<T, C> TypedSocket<T, C>
where
    T: Send + 'static,
    C: Codec<T> + Send + 'static,
{
    /// Received messages, decoded, as a stream that ends when the socket is
    /// closed and drained. A payload that does not decode is an `Err` item,
    /// and the stream goes on. Like [`Socket::messages`], the stream keeps
    /// the socket open until [`close`](Socket::close) is called.
    pub fn messages(&self) -> BoxStream<'static, Result<T, DecodeError>>
    where
        C: Clone,
    {
        self.identity_messages().map(|item| item.map(|(_, value)| value)).boxed()
    }

    /// Like [`messages`](TypedSocket::messages), with each sender's identity.
    pub fn identity_messages(&self) -> BoxStream<'static, Result<(PeerId, T), DecodeError>>
    where
        C: Clone,
    {
        let codec = self.codec.clone();
        self.socket
            .identity_messages()
            .map(move |(from, payload)| decode(&codec, from, payload).map(|value| (from, value)))
            .boxed()
    }

    /// The send side as a `futures::Sink<T>`: each value is encoded, then sent
    /// by the socket's send mode, one at a time (see [`Socket::sender`]).
    ///
    /// ```
    /// # #[cfg(feature = "json")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// use futures::{SinkExt, StreamExt};
    /// use smartsock::{Json, Socket};
    ///
    /// let server = Socket::new()?;
    /// let addr = server.bind("127.0.0.1:0").await?;
    /// let client = Socket::new()?;
    /// client.connect(&addr.to_string())?;
    ///
    /// let mut readings = client.typed::<f64, Json>().sender();
    /// readings.send(21.5).await?;
    /// readings.send(22.0).await?;
    ///
    /// let mut received = server.typed::<f64, Json>().messages().take(2);
    /// assert_eq!(received.next().await.unwrap()?, 21.5);
    /// assert_eq!(received.next().await.unwrap()?, 22.0);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "json"))]
    /// # fn main() {}
    /// ```
    pub fn sender(&self) -> TypedSender<T, C>
    where
        C: Clone,
    {
        TypedSender { inner: self.socket.sender(), codec: self.codec.clone(), _type: PhantomData }
    }
}

impl<T, C: Clone> Clone for TypedSocket<T, C> {
    fn clone(&self) -> Self {
        Self { socket: self.socket.clone(), codec: self.codec.clone(), _type: PhantomData }
    }
}

impl<T, C: fmt::Debug> fmt::Debug for TypedSocket<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSocket")
            .field("type", &std::any::type_name::<T>())
            .field("codec", &self.codec)
            .field("socket", &self.socket)
            .finish()
    }
}

/// The send side of a [`TypedSocket`] as a `futures::Sink<T>`. Made by
/// [`TypedSocket::sender`].
///
/// Each value is encoded when it is handed to the sink (`start_send`), so an
/// encoding failure is returned there, and the value is not sent; the sink
/// stays usable.
pub struct TypedSender<T, C> {
    inner: Sender,
    codec: C,
    _type: PhantomData<fn(T)>,
}

impl<T, C: Codec<T>> Sink<T> for TypedSender<T, C> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, value: T) -> Result<(), Error> {
        let this = self.get_mut();
        let payload = encode(&this.codec, &value)?;
        Pin::new(&mut this.inner).start_send(payload)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

// `Pin::get_mut` above needs `Self: Unpin`; neither field is pinned (the
// send in progress is boxed inside `Sender`), so the sink is `Unpin`
// whatever `C` is.
impl<T, C> Unpin for TypedSender<T, C> {}

impl<T, C: Clone> Clone for TypedSender<T, C> {
    /// Another sink on the same socket, with no send of its own in progress.
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), codec: self.codec.clone(), _type: PhantomData }
    }
}

impl<T, C: fmt::Debug> fmt::Debug for TypedSender<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSender")
            .field("type", &std::any::type_name::<T>())
            .field("codec", &self.codec)
            .field("inner", &self.inner)
            .finish()
    }
}

/// The one place a typed value becomes a payload: the typed socket, its
/// sink and the `json` helpers all encode here.
pub(crate) fn encode<T: ?Sized, C: Codec<T>>(codec: &C, value: &T) -> Result<Bytes, Error> {
    encoded::<T, _>(C::NAME, codec.encode(value))
}

/// The one place a payload becomes a typed value.
pub(crate) fn decode<T, C: Codec<T>>(codec: &C, from: PeerId, payload: Bytes) -> Result<T, DecodeError> {
    decoded(C::NAME, from, payload, |payload| codec.decode(payload))
}

/// An encoding's outcome as the socket reports it.
pub(crate) fn encoded<T: ?Sized, E>(codec: &'static str, outcome: Result<Bytes, E>) -> Result<Bytes, Error>
where
    E: Into<tower::BoxError>,
{
    outcome.map_err(|source| EncodeError::new::<T>(codec, source).into())
}

/// Runs `decode` on `payload`, and hands the payload back with the peer in
/// the error when it fails.
pub(crate) fn decoded<T, E>(
    codec: &'static str,
    from: PeerId,
    payload: Bytes,
    decode: impl FnOnce(&Bytes) -> Result<T, E>,
) -> Result<T, DecodeError>
where
    E: Into<tower::BoxError>,
{
    match decode(&payload) {
        Ok(value) => Ok(value),
        Err(source) => Err(DecodeError::new::<T>(codec, from, payload, source)),
    }
}
