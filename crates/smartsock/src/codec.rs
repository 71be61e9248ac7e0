//! [`Codec`]: how a typed socket turns values into payloads and back, and
//! the codecs that come with the crate (each behind its own feature).

use std::any::type_name;
use std::fmt;

use bytes::Bytes;

use crate::PeerId;

/// Turns values of type `T` into message payloads and back.
///
/// A [`TypedSocket`](crate::TypedSocket) uses one to send and receive `T`.
/// The crate's codecs (`Json`, `MsgPack`, `Postcard`, each behind the
/// feature of the same name in lowercase) cover every serde type; implement
/// this trait for anything else: protobuf through prost, a hand-written
/// format, a codec that compresses or checks a version byte.
///
/// `decode` borrows the payload as [`Bytes`], so a codec can keep slices of it
/// without copying (`payload.slice(..)`), and so that the socket still holds
/// the bytes to hand back when decoding fails.
///
/// ```
/// use smartsock::{Bytes, Codec};
///
/// /// A temperature as two bytes: whole degrees, big-endian.
/// #[derive(Clone, Copy, Default)]
/// struct Celsius;
///
/// impl Codec<i16> for Celsius {
///     const NAME: &'static str = "Celsius";
///     type Error = std::array::TryFromSliceError;
///
///     fn encode(&self, value: &i16) -> Result<Bytes, Self::Error> {
///         Ok(Bytes::copy_from_slice(&value.to_be_bytes()))
///     }
///
///     fn decode(&self, payload: &Bytes) -> Result<i16, Self::Error> {
///         Ok(i16::from_be_bytes(payload[..].try_into()?))
///     }
/// }
///
/// assert_eq!(Celsius.encode(&-40).unwrap(), &[0xff, 0xd8][..]);
/// assert_eq!(Celsius.decode(&Bytes::from_static(&[0, 21])).unwrap(), 21);
/// assert!(Celsius.decode(&Bytes::from_static(b"hot")).is_err());
/// ```
pub trait Codec<T: ?Sized> {
    /// The format's name, for error messages ("cannot decode ... as NAME").
    const NAME: &'static str;

    /// Why a value did not encode or a payload did not decode.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The payload for `value`.
    fn encode(&self, value: &T) -> Result<Bytes, Self::Error>;

    /// The value in `payload`. Must not panic, whatever the bytes: they come
    /// from the network.
    fn decode(&self, payload: &Bytes) -> Result<T, Self::Error>
    where
        T: Sized;
}

/// A value that did not encode: the typed send stopped before anything was
/// queued (the caller still has the value).
#[derive(Debug)]
pub struct EncodeError {
    type_name: &'static str,
    codec: &'static str,
    source: tower::BoxError,
}

impl EncodeError {
    pub(crate) fn new<T: ?Sized>(codec: &'static str, source: impl Into<tower::BoxError>) -> Self {
        Self { type_name: type_name::<T>(), codec, source: source.into() }
    }

    /// The codec's own error (downcast it to the codec's `Error` type for
    /// details).
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode a `{}` as {}: {}", self.type_name, self.codec, self.source)
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A received payload that did not decode: who sent it, the bytes, and why.
///
/// The message has been taken from the socket (and acknowledged, under
/// at-least-once): the next receive goes on with the next message. The
/// bytes are handed back with [`into_payload`](DecodeError::into_payload),
/// so a caller can log them, try another type, or forward them elsewhere.
#[derive(Debug)]
pub struct DecodeError {
    peer: PeerId,
    payload: Bytes,
    type_name: &'static str,
    codec: &'static str,
    source: tower::BoxError,
}

impl DecodeError {
    pub(crate) fn new<T>(
        codec: &'static str,
        peer: PeerId,
        payload: Bytes,
        source: impl Into<tower::BoxError>,
    ) -> Self {
        Self { peer, payload, type_name: type_name::<T>(), codec, source: source.into() }
    }

    /// The identity of the peer that sent the payload.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The payload that did not decode.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload that did not decode, handed back.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The codec's own error (downcast it to the codec's `Error` type for
    /// details).
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot decode a message from peer {} ({} bytes) as {} `{}`: {}",
            self.peer,
            self.payload.len(),
            self.codec,
            self.type_name,
            self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// JSON through serde_json (feature `json`): readable, and what most other
/// languages' aiomsg peers can parse with their standard library.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "json")]
impl Json {
    pub(crate) const NAME: &'static str = "JSON";

    // The codec's two halves, also used alone by the `json` helpers on
    // `Socket`, whose types need only one of `Serialize` and `Deserialize`.
    pub(crate) fn to_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
        serde_json::to_vec(value).map(Bytes::from)
    }

    pub(crate) fn from_bytes<T: serde::de::DeserializeOwned>(
        payload: &Bytes,
    ) -> Result<T, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Json {
    const NAME: &'static str = Json::NAME;
    type Error = serde_json::Error;

    fn encode(&self, value: &T) -> Result<Bytes, Self::Error> {
        Self::to_bytes(value)
    }

    fn decode(&self, payload: &Bytes) -> Result<T, Self::Error> {
        Self::from_bytes(payload)
    }
}

/// MessagePack through rmp-serde (feature `msgpack`): binary and compact,
/// with libraries in every language.
///
/// Structs are written as maps keyed by field name (not as arrays), so that
/// a Python or JavaScript peer decodes them to the dictionaries it expects,
/// and a field added at the end on one side does not shift the others.
/// Decoding accepts both forms.
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgPack;

/// Why a value did not become MessagePack, or a payload did not parse as it.
#[cfg(feature = "msgpack")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsgPackError {
    /// The value could not be written.
    #[error(transparent)]
    Encode(#[from] rmp_serde::encode::Error),
    /// The payload is not MessagePack of the expected type.
    #[error(transparent)]
    Decode(#[from] rmp_serde::decode::Error),
}

#[cfg(feature = "msgpack")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for MsgPack {
    const NAME: &'static str = "MessagePack";
    type Error = MsgPackError;

    fn encode(&self, value: &T) -> Result<Bytes, Self::Error> {
        Ok(rmp_serde::to_vec_named(value).map(Bytes::from)?)
    }

    fn decode(&self, payload: &Bytes) -> Result<T, Self::Error> {
        Ok(rmp_serde::from_slice(payload)?)
    }
}

/// postcard (feature `postcard`): the most compact of the three, for Rust
/// on both ends.
///
/// Chosen over bincode because postcard's wire format is specified and
/// stable since 1.0 (a payload written today decodes with any later 1.x),
/// its integers are varints (a small `u64` is one byte, not eight), and it
/// is maintained, while bincode's development has stopped. The format is
/// not self-describing: both ends must agree on the type, field for field
/// and in order, so prefer `Json` or `MsgPack` to talk to other
/// languages or across versions that add fields.
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Postcard {
    const NAME: &'static str = "postcard";
    type Error = postcard::Error;

    fn encode(&self, value: &T) -> Result<Bytes, Self::Error> {
        postcard::to_allocvec(value).map(Bytes::from)
    }

    fn decode(&self, payload: &Bytes) -> Result<T, Self::Error> {
        // Trailing bytes mean the payload was written for another type;
        // `from_bytes` alone would ignore them and report success.
        match postcard::take_from_bytes(payload)? {
            (value, []) => Ok(value),
            (_, _rest) => Err(postcard::Error::DeserializeBadEncoding),
        }
    }
}
