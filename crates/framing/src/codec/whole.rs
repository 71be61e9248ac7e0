//! The receive path's shortcuts: a DATA, DATA_REQ or ACK frame already
//! whole in the buffer is split off without making a [`Frame`](crate::Frame)
//! or wrapping it in a result. Anything else, the malformed included, is
//! left to [`Decoder::decode`](tokio_util::codec::Decoder::decode), which
//! checks it.

use bytes::{Buf, Bytes, BytesMut};

use super::{Codec, DecodeState, take_id};
use crate::{FrameKind, LENGTH_PREFIX_LEN, MsgId};

impl Codec {
    /// The payload of the next frame, split off `src`, if that frame is a
    /// DATA frame already whole there; else `None`, with `src` untouched,
    /// for [`decode`](tokio_util::codec::Decoder::decode) to take whatever comes next (and to
    /// refuse what is malformed). The receive path's shortcut for the frame
    /// it sees most: no [`Frame`](crate::Frame) is made, and no result wraps it.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use smartsock_framing::Codec;
    ///
    /// let mut codec = Codec::new();
    /// let mut buf = BytesMut::from(&[0, 0, 0, 3, 0x03, b'h', b'i', 0, 0, 0, 1, 0x02][..]);
    /// assert_eq!(codec.next_whole_data(&mut buf).unwrap(), "hi");
    /// // A HEARTBEAT comes next: left for `decode`.
    /// assert!(codec.next_whole_data(&mut buf).is_none());
    /// assert_eq!(buf.len(), 5);
    /// ```
    #[inline]
    pub fn next_whole_data(&mut self, src: &mut BytesMut) -> Option<Bytes> {
        let length = self.whole_envelope(src, FrameKind::Data)?;
        let mut frame = src.split_to(LENGTH_PREFIX_LEN + length).freeze();
        frame.advance(LENGTH_PREFIX_LEN + 1);
        Some(frame)
    }

    /// Like [`next_whole_data`](Codec::next_whole_data), for a DATA_REQ
    /// frame: its id and payload, split off `src`, if it is next and whole
    /// there (and long enough to hold an id: a shorter one is left to
    /// `decode`, which refuses it).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use smartsock_framing::{Codec, MsgId};
    ///
    /// let mut codec = Codec::new();
    /// let mut buf = BytesMut::from(&[0, 0, 0, 19, 0x04][..]);
    /// buf.extend_from_slice(&[7; 16]);
    /// buf.extend_from_slice(b"ok");
    /// let (id, payload) = codec.next_whole_request(&mut buf).unwrap();
    /// assert_eq!((id, &payload[..]), (MsgId::from_bytes([7; 16]), &b"ok"[..]));
    /// assert!(buf.is_empty());
    /// ```
    #[inline]
    pub fn next_whole_request(&mut self, src: &mut BytesMut) -> Option<(MsgId, Bytes)> {
        let length = self.whole_envelope(src, FrameKind::DataReq)?;
        if length < 1 + 16 {
            return None;
        }
        let mut frame = src.split_to(LENGTH_PREFIX_LEN + length).freeze();
        let id = MsgId::from_bytes(take_id(&frame[LENGTH_PREFIX_LEN + 1..]));
        frame.advance(LENGTH_PREFIX_LEN + 1 + 16);
        Some((id, frame))
    }

    /// Like [`next_whole_data`](Codec::next_whole_data), for an ACK frame:
    /// its id, with the frame taken off `src` (an ACK of any other length
    /// is left to `decode`, which refuses it).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use smartsock_framing::{Codec, MsgId};
    ///
    /// let mut codec = Codec::new();
    /// let mut buf = BytesMut::from(&[0, 0, 0, 17, 0x05][..]);
    /// buf.extend_from_slice(&[7; 16]);
    /// assert_eq!(codec.next_whole_ack(&mut buf), Some(MsgId::from_bytes([7; 16])));
    /// assert!(buf.is_empty());
    /// ```
    #[inline]
    pub fn next_whole_ack(&mut self, src: &mut BytesMut) -> Option<MsgId> {
        let length = self.whole_envelope(src, FrameKind::Ack)?;
        if length != 1 + 16 {
            return None;
        }
        let id = MsgId::from_bytes(take_id(&src[LENGTH_PREFIX_LEN + 1..]));
        src.advance(LENGTH_PREFIX_LEN + length);
        Some(id)
    }

    /// The envelope length of the next frame, if it is of `kind` and whole
    /// in `src` (and nothing of a frame is in progress).
    #[inline]
    fn whole_envelope(&self, src: &BytesMut, kind: FrameKind) -> Option<usize> {
        if !matches!(self.state, DecodeState::Head) {
            return None;
        }
        // The prefix is checked as `decode` checks it; a bad one is left to
        // `decode`, which refuses it.
        let length = self.decode_head(src).ok().flatten()?;
        // `decode_head` saw the prefix, so the subtraction cannot underflow;
        // an addition could overflow on 32-bit targets.
        if src.get(LENGTH_PREFIX_LEN) != Some(&kind.type_byte()) || src.len() - LENGTH_PREFIX_LEN < length {
            return None;
        }
        Some(length)
    }
}
