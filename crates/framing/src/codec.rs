//! [`Codec`]: the tokio-util decoder and encoder of [`Frame`]s.
//!
//! # Decoding
//!
//! The decoder has two states: waiting for a 4-byte length prefix (*head*),
//! then waiting for that many envelope bytes (*data*). The length is checked
//! against the maximum the moment its 4 bytes are read, so a hostile prefix
//! never makes the decoder reserve memory for it. A complete envelope is split
//! off the read buffer and frozen: the payload of a decoded frame is a
//! zero-copy slice of the bytes that were read.
//!
//! A DATA frame carrying `hi`:
//!
//! ```text
//! +---- length: u32 BE ----+ type + payload -+
//! | 00    00    00    03   |  03 | 68    69  |
//! +------------------------+-----+-----------+
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use smartsock_framing::{Codec, Frame};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = Codec::new();
//! let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x03, 0x03, b'h', b'i'][..]);
//! assert_eq!(codec.decode(&mut buf)?, Some(Frame::Data("hi".into())));
//! assert!(buf.is_empty());
//! # Ok::<(), smartsock_framing::FrameError>(())
//! ```
//!
//! Bytes of an unfinished frame stay buffered until the rest arrives:
//!
//! ```
//! use bytes::BytesMut;
//! use smartsock_framing::{Codec, Frame};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = Codec::new();
//! let mut buf = BytesMut::from(&[0x00, 0x00, 0x00][..]);
//! assert_eq!(codec.decode(&mut buf)?, None); // half a length prefix
//! buf.extend_from_slice(&[0x01, 0x02]);
//! assert_eq!(codec.decode(&mut buf)?, Some(Frame::Heartbeat));
//! # Ok::<(), smartsock_framing::FrameError>(())
//! ```
//!
//! A DATA_REQ puts a 16-byte message id before the payload, and the ACK that
//! answers it carries the same id:
//!
//! ```text
//! DATA_REQ: 00 00 00 13 | 04 | <16 bytes msg_id> | 6f 6b        ("ok")
//! ACK:      00 00 00 11 | 05 | <16 bytes msg_id>
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use smartsock_framing::{Codec, Frame, MsgId};
//! use tokio_util::codec::Decoder;
//!
//! let id = [0xab; 16];
//! let mut wire = vec![0x00, 0x00, 0x00, 0x13, 0x04];
//! wire.extend_from_slice(&id);
//! wire.extend_from_slice(b"ok");
//! wire.extend_from_slice(&[0x00, 0x00, 0x00, 0x11, 0x05]);
//! wire.extend_from_slice(&id);
//!
//! let mut codec = Codec::new();
//! let mut buf = BytesMut::from(&wire[..]);
//! let req = Frame::DataReq { id: MsgId::from_bytes(id), payload: "ok".into() };
//! assert_eq!(codec.decode(&mut buf)?, Some(req));
//! assert_eq!(codec.decode(&mut buf)?, Some(Frame::Ack(MsgId::from_bytes(id))));
//! # Ok::<(), smartsock_framing::FrameError>(())
//! ```
//!
//! A length over the maximum is refused from its prefix alone:
//!
//! ```
//! use bytes::BytesMut;
//! use smartsock_framing::{Codec, FrameError};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = Codec::builder().max_frame_length(1024).build();
//! let mut buf = BytesMut::from(&[0x00, 0x00, 0x04, 0x01][..]); // 1025
//! assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLong { length: 1025, max: 1024 })));
//! ```
//!
//! # Encoding
//!
//! A HELLO is always 22 bytes, its length prefix always `00 00 00 12`:
//!
//! ```text
//! 00 00 00 12 | 01 | 01 | <16 bytes identity>
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use smartsock_framing::{Codec, Frame, PeerId};
//! use tokio_util::codec::Encoder;
//!
//! let mut buf = BytesMut::new();
//! Codec::new().encode(Frame::hello(PeerId::from_bytes([0x42; 16])), &mut buf)?;
//! assert_eq!(&buf[..6], &[0x00, 0x00, 0x00, 0x12, 0x01, 0x01]);
//! assert_eq!(&buf[6..], &[0x42; 16]);
//! # Ok::<(), smartsock_framing::FrameError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{Frame, FrameError, FrameKind, LENGTH_PREFIX_LEN, MsgId, PeerId};

mod whole;

/// The default maximum frame length: 16 MiB of envelope.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// Decodes and encodes [`Frame`]s; see the [module docs](self) for the byte layout.
///
/// The maximum frame length bounds the *envelope* (what the length prefix
/// counts: type byte and body). A prefix of exactly the maximum is accepted,
/// one byte more is refused.
#[derive(Debug, Clone)]
pub struct Codec {
    max_frame_length: usize,
    state: DecodeState,
}

#[derive(Debug, Clone, Copy)]
enum DecodeState {
    Head,
    Data(usize),
}

impl Codec {
    /// A codec with the default maximum frame length ([`DEFAULT_MAX_FRAME_LENGTH`]).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the maximum frame length.
    pub fn builder() -> CodecBuilder {
        CodecBuilder { max_frame_length: DEFAULT_MAX_FRAME_LENGTH }
    }

    /// The largest envelope this codec decodes or encodes.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The envelope length of the frame being decoded, once its length
    /// prefix has been read and until the frame is complete: a reader can
    /// then size its buffer for the rest of it.
    pub fn envelope_in_progress(&self) -> Option<usize> {
        match self.state {
            DecodeState::Head => None,
            DecodeState::Data(length) => Some(length),
        }
    }

    /// Refuses `frame` if its envelope is over this codec's maximum. The
    /// transport calls this before queueing a frame, so that a message too big
    /// to send is handed back to its sender instead of breaking a connection.
    pub fn check_len(&self, frame: &Frame) -> Result<(), FrameError> {
        let length = frame.envelope_len();
        if length > self.max_frame_length {
            return Err(FrameError::TooLong { length: length as u64, max: self.max_frame_length });
        }
        Ok(())
    }

    #[inline]
    fn decode_head(&self, src: &BytesMut) -> Result<Option<usize>, FrameError> {
        if src.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        // Widening to u64 keeps the comparison exact on 32-bit targets too.
        if u64::from(length) > self.max_frame_length as u64 {
            return Err(FrameError::TooLong { length: u64::from(length), max: self.max_frame_length });
        }
        if length == 0 {
            return Err(FrameError::EmptyEnvelope);
        }
        Ok(Some(length as usize))
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`Codec`].
///
/// ```
/// use smartsock_framing::Codec;
///
/// let codec = Codec::builder().max_frame_length(64 * 1024).build();
/// assert_eq!(codec.max_frame_length(), 65536);
/// ```
#[derive(Debug, Clone)]
pub struct CodecBuilder {
    max_frame_length: usize,
}

impl CodecBuilder {
    /// The largest envelope accepted (default 16 MiB). Frames over it are a
    /// decode error, raised from the length prefix alone, and an encode error.
    /// At least 1 (an envelope holds its type byte), at most `u32::MAX`.
    pub fn max_frame_length(mut self, max: usize) -> Self {
        self.max_frame_length = max.clamp(1, u32::MAX as usize);
        self
    }

    /// The codec.
    pub fn build(self) -> Codec {
        Codec { max_frame_length: self.max_frame_length, state: DecodeState::Head }
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let length = match self.state {
            DecodeState::Head => match self.decode_head(src)? {
                // `decode_head` saw the prefix, so the subtraction cannot
                // underflow; an addition could overflow on 32-bit targets.
                Some(length) if src.len() - LENGTH_PREFIX_LEN >= length => {
                    // The whole frame is here (the usual case). A frame with
                    // no payload (ACK, HEARTBEAT, HELLO) is parsed where it
                    // lies: splitting it off would make the buffer shared,
                    // an atomic count up and down per ACK.
                    let envelope = &src[LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + length];
                    if let Some(kind) = envelope.first().and_then(|&byte| FrameKind::from_type_byte(byte))
                        && !matches!(kind, FrameKind::Data | FrameKind::DataReq)
                    {
                        let frame = parse_body(kind, &envelope[1..]);
                        src.advance(LENGTH_PREFIX_LEN + length);
                        return frame.map(Some);
                    }
                    // Otherwise one split, and the prefix skipped on the
                    // `Bytes`, where skipping is cheap.
                    let mut frame = src.split_to(LENGTH_PREFIX_LEN + length).freeze();
                    frame.advance(LENGTH_PREFIX_LEN);
                    return parse_envelope(frame).map(Some);
                }
                Some(length) => {
                    src.advance(LENGTH_PREFIX_LEN);
                    self.state = DecodeState::Data(length);
                    length
                }
                None => return Ok(None),
            },
            DecodeState::Data(length) => length,
        };
        if src.len() < length {
            return Ok(None);
        }
        self.state = DecodeState::Head;
        parse_envelope(src.split_to(length).freeze()).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let buffered = match self.state {
            DecodeState::Head => src.len(),
            DecodeState::Data(_) => LENGTH_PREFIX_LEN + src.len(),
        };
        if buffered == 0 { Ok(None) } else { Err(FrameError::Truncated { buffered }) }
    }
}

/// Turns one complete envelope (type byte and body) into a frame.
fn parse_envelope(mut envelope: Bytes) -> Result<Frame, FrameError> {
    let type_byte = envelope.get_u8();
    let Some(kind) = FrameKind::from_type_byte(type_byte) else {
        return Ok(Frame::Unknown { kind: type_byte, body: envelope });
    };
    match kind {
        FrameKind::Data => Ok(Frame::Data(envelope)),
        FrameKind::DataReq => {
            if envelope.len() < 16 {
                return Err(FrameError::BadBody { kind, actual: envelope.len(), expected: "at least 16" });
            }
            let id = MsgId::from_bytes(take_id(&envelope));
            envelope.advance(16);
            Ok(Frame::DataReq { id, payload: envelope })
        }
        FrameKind::Hello | FrameKind::Heartbeat | FrameKind::Ack => parse_body(kind, &envelope),
    }
}

/// Turns a frame's body into the frame, from a slice: for the frames that
/// carry no payload (HELLO, HEARTBEAT, ACK). A payload would be copied.
fn parse_body(kind: FrameKind, body: &[u8]) -> Result<Frame, FrameError> {
    let bad_body = |expected| FrameError::BadBody { kind, actual: body.len(), expected };
    match kind {
        FrameKind::Hello => {
            if body.len() != 17 {
                return Err(bad_body("17"));
            }
            Ok(Frame::Hello { version: body[0], identity: PeerId::from_bytes(take_id(&body[1..])) })
        }
        // The protocol gives a heartbeat no body; a body is ignored rather
        // than refused, since nothing in it could be misread.
        FrameKind::Heartbeat => Ok(Frame::Heartbeat),
        FrameKind::Ack => {
            if body.len() != 16 {
                return Err(bad_body("16"));
            }
            Ok(Frame::Ack(MsgId::from_bytes(take_id(body))))
        }
        FrameKind::Data | FrameKind::DataReq => {
            parse_envelope(Bytes::from([&[kind.type_byte()], body].concat()))
        }
    }
}

fn take_id(bytes: &[u8]) -> [u8; 16] {
    let mut id = [0; 16];
    id.copy_from_slice(&bytes[..16]);
    id
}

impl Encoder<Frame> for Codec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for Codec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.check_len(frame)?;
        frame.encode_into(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode_all(codec: &mut Codec, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Frames from `buf` as the receive path takes them (`with_shortcut`:
    /// the DATA and DATA_REQ shortcuts first, then `decode`), until a frame
    /// is not whole or is refused; with what is left undecoded.
    fn take_frames(max: usize, bytes: &[u8], with_shortcut: bool) -> (Vec<Frame>, Option<String>, usize) {
        let mut codec = Codec::builder().max_frame_length(max).build();
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        loop {
            if with_shortcut && let Some(payload) = codec.next_whole_data(&mut buf) {
                frames.push(Frame::Data(payload));
                continue;
            }
            if with_shortcut && let Some((id, payload)) = codec.next_whole_request(&mut buf) {
                frames.push(Frame::DataReq { id, payload });
                continue;
            }
            if with_shortcut && let Some(id) = codec.next_whole_ack(&mut buf) {
                frames.push(Frame::Ack(id));
                continue;
            }
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, None, buf.len()),
                Err(e) => return (frames, Some(e.to_string()), buf.len()),
            }
        }
    }

    #[test]
    fn the_shortcuts_take_exactly_what_decode_takes() {
        let mut wire = BytesMut::new();
        let frames = [
            Frame::Data(Bytes::from_static(b"first")),
            Frame::Heartbeat,
            Frame::Data(Bytes::new()),
            Frame::DataReq { id: MsgId::from_bytes([7; 16]), payload: Bytes::from_static(b"req") },
            Frame::Ack(MsgId::from_bytes([8; 16])),
            Frame::DataReq { id: MsgId::from_bytes([9; 16]), payload: Bytes::new() },
            Frame::Data(Bytes::from(vec![5; 300])),
        ];
        for frame in &frames {
            Codec::new().encode(frame, &mut wire).unwrap();
        }
        // Every cut of the stream: whole frames, then a frame in pieces.
        for cut in 0..=wire.len() {
            let bytes = &wire[..cut];
            assert_eq!(take_frames(1024, bytes, true), take_frames(1024, bytes, false), "cut at {cut}");
        }
        assert_eq!(take_frames(1024, &wire, true).0, frames);
        // Over the maximum: the shortcut leaves it, and decode refuses it.
        let refused = take_frames(100, &wire, true);
        assert_eq!(refused, take_frames(100, &wire, false));
        assert!(refused.1.unwrap().contains("exceeds"), "over the maximum must be refused");
    }

    #[test]
    fn the_shortcuts_leave_a_request_or_ack_of_the_wrong_length_to_decode() {
        // (type byte, envelope length): a DATA_REQ one byte short of its id
        // (17 is the least, taken in the test above), ACKs one byte either
        // side of their exact 17.
        for (kind, len) in [(0x04, 16u8), (0x05, 16), (0x05, 18)] {
            let mut bytes = vec![0, 0, 0, len, kind];
            bytes.extend(std::iter::repeat_n(1, usize::from(len) - 1));
            let mut buf = BytesMut::from(&bytes[..]);
            let mut codec = Codec::new();
            assert!(codec.next_whole_request(&mut buf).is_none() && codec.next_whole_ack(&mut buf).is_none());
            assert_eq!(buf.len(), bytes.len(), "left untouched");
            let refused = take_frames(1024, &bytes, true);
            assert_eq!(refused, take_frames(1024, &bytes, false));
            assert!(refused.1.is_some(), "decode refuses type {kind} of {len} bytes");
        }
    }

    #[test]
    fn the_data_shortcut_leaves_an_empty_envelope_to_decode() {
        // Length 0, then what looks like a DATA type byte: the next frame's.
        let bytes = [0, 0, 0, 0, 3, 0, 0, 0, 1];
        let (frames, error, _) = take_frames(1024, &bytes, true);
        assert!(frames.is_empty());
        assert_eq!(error, Some(FrameError::EmptyEnvelope.to_string()));
    }

    #[test]
    fn unknown_types_are_kept_not_refused() {
        let frames = decode_all(&mut Codec::new(), &[0, 0, 0, 3, 0x7f, 1, 2]).unwrap();
        assert_eq!(frames, vec![Frame::Unknown { kind: 0x7f, body: Bytes::from_static(&[1, 2]) }]);
    }

    #[test]
    fn decoded_payload_is_a_slice_of_the_read_buffer() {
        let mut buf = BytesMut::from(&[0, 0, 0, 4, 3, b'a', b'b', b'c'][..]);
        let start = buf.as_ptr() as usize;
        let Some(Frame::Data(payload)) = Codec::new().decode(&mut buf).unwrap() else {
            panic!("expected a DATA frame");
        };
        assert_eq!(payload.as_ptr() as usize, start + 5, "payload was copied");
    }

    #[test]
    fn frames_without_payload_are_parsed_in_place_between_frames_with_one() {
        let id = MsgId::from_bytes([7; 16]);
        let mut wire = BytesMut::new();
        for frame in [Frame::Ack(id), Frame::Data(Bytes::from_static(b"x")), Frame::Heartbeat, Frame::Ack(id)]
        {
            frame.encode_into(&mut wire);
        }
        // An ACK with a short body: refused, and consumed whole.
        wire.extend_from_slice(&[0, 0, 0, 3, 0x05, 1, 2]);
        let mut codec = Codec::new();
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).unwrap() {
            frames.push(frame);
            if frames.len() == 4 {
                break;
            }
        }
        assert_eq!(
            frames,
            [Frame::Ack(id), Frame::Data(Bytes::from_static(b"x")), Frame::Heartbeat, Frame::Ack(id)]
        );
        assert!(matches!(codec.decode(&mut wire), Err(FrameError::BadBody { actual: 2, .. })));
        assert!(wire.is_empty());
    }

    #[test]
    fn a_body_parsed_from_a_slice_copies_its_payload() {
        let id = [9; 16];
        let body = [&id[..], b"pay"].concat();
        assert_eq!(parse_body(FrameKind::Data, b"pay").unwrap(), Frame::Data(Bytes::from_static(b"pay")));
        assert_eq!(
            parse_body(FrameKind::DataReq, &body).unwrap(),
            Frame::DataReq { id: MsgId::from_bytes(id), payload: Bytes::from_static(b"pay") }
        );
    }

    #[test]
    fn encode_refuses_frames_over_the_maximum() {
        let mut codec = Codec::builder().max_frame_length(4).build();
        let mut buf = BytesMut::new();
        codec.encode(Frame::Data(Bytes::from_static(b"abc")), &mut buf).unwrap();
        let err = codec.encode(Frame::Data(Bytes::from_static(b"abcd")), &mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLong { length: 5, max: 4 }));
    }
}
