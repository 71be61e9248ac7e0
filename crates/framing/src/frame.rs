//! [`Frame`]: one protocol message, and its encoding.

use std::fmt;
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};

use crate::{MsgId, PeerId};

/// The protocol version this crate speaks, carried in every HELLO.
pub const PROTOCOL_VERSION: u8 = 0x01;

/// Bytes in the length prefix of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The longest header [`Frame::header`] produces: a HELLO, which has no payload
/// (4 length + 1 type + 1 version + 16 identity).
pub const MAX_HEADER_LEN: usize = 22;

/// The type byte of each known frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// `0x01`: opens every connection.
    Hello,
    /// `0x02`: keeps an idle connection alive.
    Heartbeat,
    /// `0x03`: an at-most-once message.
    Data,
    /// `0x04`: an at-least-once message that asks for an ACK.
    DataReq,
    /// `0x05`: acknowledges one DATA_REQ.
    Ack,
}

impl FrameKind {
    /// The byte that stands for this kind on the wire.
    pub const fn type_byte(self) -> u8 {
        match self {
            Self::Hello => 0x01,
            Self::Heartbeat => 0x02,
            Self::Data => 0x03,
            Self::DataReq => 0x04,
            Self::Ack => 0x05,
        }
    }

    /// The kind a type byte stands for, if it is a known one.
    pub const fn from_type_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::Hello),
            0x02 => Some(Self::Heartbeat),
            0x03 => Some(Self::Data),
            0x04 => Some(Self::DataReq),
            0x05 => Some(Self::Ack),
            _ => None,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hello => "HELLO",
            Self::Heartbeat => "HEARTBEAT",
            Self::Data => "DATA",
            Self::DataReq => "DATA_REQ",
            Self::Ack => "ACK",
        })
    }
}

/// One protocol frame, decoded.
///
/// Payloads are [`Bytes`]: cloning a frame (for example to publish it to many
/// peers) shares the payload instead of copying it.
#[derive(Clone, PartialEq, Eq)]
// A whole word for the tag, so that every field sits aligned: with a
// one-byte tag, `Hello`'s version byte came right after it, and moves of a
// frame (one per send) were made of unaligned pieces that stalled on the
// stores just before them.
#[repr(u64)]
pub enum Frame {
    /// Opens a connection: the protocol version and the sender's identity.
    Hello {
        /// The protocol version; smartsock speaks [`PROTOCOL_VERSION`].
        version: u8,
        /// The sending socket's identity.
        identity: PeerId,
    },
    /// Keeps a connection alive; never reaches the application.
    Heartbeat,
    /// An at-most-once message.
    Data(Bytes),
    /// An at-least-once message: the receiver answers with [`Frame::Ack`] of `id`.
    DataReq {
        /// The message's id, echoed by the ACK.
        id: MsgId,
        /// The application's bytes.
        payload: Bytes,
    },
    /// Acknowledges the DATA_REQ with this id.
    Ack(MsgId),
    /// A frame of a type this crate does not know. Kept, not refused, so that
    /// upper layers can skip it: the protocol reserves unknown types for extensions.
    Unknown {
        /// The type byte.
        kind: u8,
        /// Everything after the type byte.
        body: Bytes,
    },
}

impl Frame {
    /// A HELLO of this crate's protocol version for `identity`.
    pub const fn hello(identity: PeerId) -> Self {
        Self::Hello { version: PROTOCOL_VERSION, identity }
    }

    /// The frame's type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Self::Hello { .. } => FrameKind::Hello.type_byte(),
            Self::Heartbeat => FrameKind::Heartbeat.type_byte(),
            Self::Data(_) => FrameKind::Data.type_byte(),
            Self::DataReq { .. } => FrameKind::DataReq.type_byte(),
            Self::Ack(_) => FrameKind::Ack.type_byte(),
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// The application payload a DATA or DATA_REQ carries (an unknown frame's
    /// body counts as its payload); empty for the other kinds.
    pub fn payload(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::from_static(&[]);
        match self {
            Self::Data(payload) | Self::DataReq { payload, .. } => payload,
            Self::Unknown { body, .. } => body,
            _ => &EMPTY,
        }
    }

    /// The envelope's length: the value of the frame's length prefix.
    pub fn envelope_len(&self) -> usize {
        self.header_body_len() + 1 + self.payload().len()
    }

    /// Bytes the whole frame takes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LENGTH_PREFIX_LEN + self.envelope_len()
    }

    /// Bytes of fixed-size body between the type byte and the payload.
    fn header_body_len(&self) -> usize {
        match self {
            Self::Hello { .. } => 17,
            Self::DataReq { .. } | Self::Ack(_) => 16,
            _ => 0,
        }
    }

    /// Everything of the frame but its payload: length prefix, type byte and
    /// fixed fields, at most [`MAX_HEADER_LEN`] bytes, made without touching
    /// the payload. Write the header, then [`Frame::payload`], to send the
    /// frame with a vectored write and no copy of a large payload.
    ///
    /// # Panics
    ///
    /// If the envelope is longer than `u32::MAX` bytes, which no frame within
    /// a [`Codec`](crate::Codec)'s maximum can be.
    pub fn header(&self) -> FrameHeader {
        let envelope_len = u32::try_from(self.envelope_len()).expect("frame longer than u32::MAX");
        // Fields at fixed places: constant-size copies compile to plain
        // stores (this runs once per message on the send path).
        let mut bytes = [0; MAX_HEADER_LEN];
        bytes[..4].copy_from_slice(&envelope_len.to_be_bytes());
        bytes[4] = self.type_byte();
        let len = match self {
            Self::Hello { version, identity } => {
                bytes[5] = *version;
                bytes[6..22].copy_from_slice(identity.as_bytes());
                22
            }
            Self::DataReq { id, .. } | Self::Ack(id) => {
                bytes[5..21].copy_from_slice(id.as_bytes());
                21
            }
            _ => 5,
        };
        FrameHeader { bytes, len }
    }

    /// Appends the whole frame to `dst`.
    ///
    /// Checks no maximum: [`Codec`](crate::Codec)'s encoder does.
    ///
    /// # Panics
    ///
    /// As [`Frame::header`].
    pub fn encode_into(&self, dst: &mut BytesMut) {
        let payload = self.payload();
        let header = self.header();
        dst.reserve(header.len() + payload.len());
        dst.put_slice(&header);
        dst.put_slice(payload);
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads can be megabytes: show their length, not their bytes.
        match self {
            Self::Hello { version, identity } => {
                f.debug_struct("Hello").field("version", version).field("identity", identity).finish()
            }
            Self::Heartbeat => f.write_str("Heartbeat"),
            Self::Data(payload) => write!(f, "Data({} bytes)", payload.len()),
            Self::DataReq { id, payload } => {
                write!(f, "DataReq {{ id: {id}, payload: {} bytes }}", payload.len())
            }
            Self::Ack(id) => write!(f, "Ack({id})"),
            Self::Unknown { kind, body } => {
                write!(f, "Unknown {{ kind: {kind:#04x}, body: {} bytes }}", body.len())
            }
        }
    }
}

/// A frame's bytes up to its payload, produced by [`Frame::header`]; reads as a `&[u8]`.
#[derive(Clone, Copy)]
pub struct FrameHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Deref for FrameHeader {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for FrameHeader {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for FrameHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FrameHeader").field(&&**self).finish()
    }
}
