//! The aiomsg v1 wire format: [`Frame`]s, the identities they carry
//! ([`PeerId`], [`MsgId`]), and [`Codec`], a zero-copy tokio-util codec.
//!
//! This is the bottom layer of smartsock and useful alone: put [`Codec`] on
//! any `AsyncRead + AsyncWrite` with `tokio_util::codec::Framed` and you
//! speak the protocol that every aiomsg implementation speaks.
//!
//! ```
//! use futures::{SinkExt, StreamExt};
//! use smartsock_framing::{Codec, Frame, PeerId};
//! use tokio_util::codec::Framed;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), smartsock_framing::FrameError> {
//! let (a, b) = tokio::io::duplex(1024);
//! let mut left = Framed::new(a, Codec::new());
//! let mut right = Framed::new(b, Codec::new());
//!
//! let me = PeerId::random();
//! left.send(Frame::hello(me)).await?;
//! left.send(Frame::Data("hello".into())).await?;
//!
//! assert_eq!(right.next().await.transpose()?, Some(Frame::hello(me)));
//! assert_eq!(right.next().await.transpose()?, Some(Frame::Data("hello".into())));
//! # Ok(())
//! # }
//! ```
//!
//! The [`codec`] module shows the bytes of each frame. A frame's header can be
//! made apart from its payload ([`Frame::header`]), so a writer can send many
//! frames with one vectored write and never copy a large payload.
//!
//! Decoding is hostile-input safe: a length prefix over the maximum (default
//! [16 MiB](DEFAULT_MAX_FRAME_LENGTH)) is refused before anything is
//! allocated, malformed known frames are errors that say which rule broke, and
//! unknown frame types are passed up as [`Frame::Unknown`] for the caller to
//! skip, as the protocol asks.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod codec;
mod error;
mod frame;
mod id;

pub use codec::{Codec, CodecBuilder, DEFAULT_MAX_FRAME_LENGTH};
pub use error::FrameError;
pub use frame::{Frame, FrameHeader, FrameKind, LENGTH_PREFIX_LEN, MAX_HEADER_LEN, PROTOCOL_VERSION};
pub use id::{MsgId, PeerId};
