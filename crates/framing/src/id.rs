//! The two 16-byte names of the protocol: [`PeerId`] and [`MsgId`].

use std::fmt;
use std::str::FromStr;

use crate::FrameError;

/// Writes 16 bytes as 32 lowercase hex digits, the form aiomsg shows identities in.
fn write_hex(bytes: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt::Display::fmt(&uuid::Uuid::from_bytes(*bytes).simple(), f)
}

/// Parses 32 hex digits (either case; the hyphenated UUID form is accepted too).
fn parse_hex(s: &str) -> Result<[u8; 16], FrameError> {
    let parsed = if s.len() == 32 || s.len() == 36 { uuid::Uuid::try_parse(s).ok() } else { None };
    parsed.map(|u| *u.as_bytes()).ok_or_else(|| FrameError::BadId { text: s.chars().take(64).collect() })
}

/// The identity of a *socket*: 16 bytes, stable for the socket's life and
/// sent in its HELLO on every connection.
///
/// It shows and parses as 32 lowercase hex digits:
///
/// ```
/// use smartsock_framing::PeerId;
///
/// let id: PeerId = "00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(id.as_bytes()[1], 0x11);
/// assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
/// assert!("not an id".parse::<PeerId>().is_err());
/// # Ok::<(), smartsock_framing::FrameError>(())
/// ```
// Aligned to 8: an identity sits in the enums of the send path
// (`Destination`, errors, outcomes), and byte alignment put it at odd
// offsets there, so every move of those values was made of unaligned loads
// overlapping earlier stores: store-forwarding stalls that perf showed as a
// tenth of the sender's time on 16-byte messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(align(8))]
pub struct PeerId([u8; 16]);

impl PeerId {
    /// A fresh random identity (UUID version 4), what a socket uses unless told otherwise.
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The identity made of exactly these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes as they travel in a HELLO.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(Self)
    }
}

impl From<[u8; 16]> for PeerId {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// The name of one at-least-once message: 16 bytes, carried by its DATA_REQ
/// and echoed unchanged in the ACK that answers it.
///
/// ```
/// use smartsock_framing::MsgId;
///
/// let id = MsgId::from_bytes([7; 16]);
/// assert_eq!(id.to_string(), "07070707070707070707070707070707");
/// assert_eq!(id.to_string().parse::<MsgId>()?, id);
/// # Ok::<(), smartsock_framing::FrameError>(())
/// ```
// Aligned to 8 for the same reason as `PeerId`: it sits in `Frame`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(align(8))]
pub struct MsgId([u8; 16]);

impl MsgId {
    /// A random message id (UUID version 4).
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The message id made of exactly these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes as they travel in a DATA_REQ or ACK.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({self})")
    }
}

impl FromStr for MsgId {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(Self)
    }
}

impl From<[u8; 16]> for MsgId {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_differ_and_round_trip_through_text() {
        let a = PeerId::random();
        let b = PeerId::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(text.parse::<PeerId>().unwrap(), a);
    }

    #[test]
    fn parse_accepts_upper_case_and_hyphens_but_not_other_lengths() {
        let id: PeerId = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
        assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
        let hyphenated: PeerId = "00112233-4455-6677-8899-aabbccddeeff".parse().unwrap();
        assert_eq!(hyphenated, id);
        assert!("0011".parse::<PeerId>().is_err());
        assert!("00112233445566778899aabbccddeeff00".parse::<PeerId>().is_err());
        assert!("g0112233445566778899aabbccddeeff".parse::<PeerId>().is_err());
        assert!("".parse::<MsgId>().is_err());
    }
}
