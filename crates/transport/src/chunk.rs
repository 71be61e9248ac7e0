//! [`Chunk`]: what a connection's writer takes out of its outbox, and
//! turns back into frames when they were never written.

use std::collections::VecDeque;

use bytes::BytesMut;
use smartsock_framing::{Frame, FrameKind, LENGTH_PREFIX_LEN, MsgId};

use crate::peer::Outgoing;

/// What the writer takes out of the outbox, in order.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Small frames encoded back to back, all equally reroutable.
    Encoded {
        bytes: BytesMut,
        /// DATA and DATA_REQ frames in `bytes`.
        messages: u32,
        /// Their payload bytes.
        payload: usize,
        reroutable: bool,
    },
    /// A frame with a large payload, written from the payload's own buffer.
    Own(Outgoing),
    /// The rest of a frame a sender began to write itself (the stream took
    /// only part of it): written first, and if the connection ends before
    /// it is, lost like a frame cut in a write.
    Tail {
        bytes: BytesMut,
        /// 1 for a DATA or DATA_REQ frame.
        messages: u32,
        payload: usize,
    },
}

impl Chunk {
    /// The DATA and DATA_REQ frames in the chunk.
    pub(crate) fn messages(&self) -> u64 {
        match self {
            Self::Encoded { messages, .. } | Self::Tail { messages, .. } => u64::from(*messages),
            Self::Own(item) => u64::from(is_message(&item.frame)),
        }
    }

    /// Their payload bytes.
    pub(crate) fn payload_bytes(&self) -> u64 {
        match self {
            Self::Encoded { payload, .. } | Self::Tail { payload, .. } => *payload as u64,
            Self::Own(item) if is_message(&item.frame) => item.frame.payload().len() as u64,
            Self::Own(_) => 0,
        }
    }

    /// The frames of the chunk again, appended to `out` (a tail is not
    /// one: see [`Outbox::close_chunks`]).
    pub(crate) fn decode_into(self, out: &mut Vec<Outgoing>) {
        match self {
            Self::Own(item) => out.push(item),
            Self::Tail { .. } => {}
            Self::Encoded { mut bytes, reroutable, .. } => {
                // Our own encoding, so it parses; a frame that would not is
                // left out rather than guessed at.
                let mut codec = smartsock_framing::Codec::builder().max_frame_length(usize::MAX >> 1).build();
                while let Ok(Some(frame)) = tokio_util::codec::Decoder::decode(&mut codec, &mut bytes) {
                    out.push(Outgoing { frame, reroutable });
                }
            }
        }
    }
}

pub(crate) fn is_message(frame: &Frame) -> bool {
    matches!(frame, Frame::Data(_) | Frame::DataReq { .. })
}

/// The frames of `chunks`, in order (a tail, part of a frame a sender
/// wrote, is none: see [`Chunk::Tail`]).
pub(crate) fn decode(chunks: VecDeque<Chunk>) -> Vec<Outgoing> {
    let mut frames = Vec::new();
    for chunk in chunks {
        chunk.decode_into(&mut frames);
    }
    frames
}

/// Frames of an encoded run that a write of `len` bytes took whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes of the frames taken whole.
    pub(crate) len: usize,
    pub(crate) frames: usize,
    pub(crate) messages: u32,
    pub(crate) payload: usize,
    /// The frame the write took part of, if any.
    pub(crate) cut: Option<Cut>,
}

/// A frame a write took part of: its whole length, and what it counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) len: usize,
    pub(crate) messages: u32,
    pub(crate) payload: usize,
}

/// Walks the frames of `run` (our own encoding: whole frames, back to back)
/// that the first `taken` bytes cover.
pub(crate) fn whole_frames(run: &[u8], taken: usize) -> Written {
    let mut written = Written::default();
    let mut at = 0;
    while at + LENGTH_PREFIX_LEN < run.len() && at < taken {
        let mut prefix = [0; LENGTH_PREFIX_LEN];
        prefix.copy_from_slice(&run[at..at + LENGTH_PREFIX_LEN]);
        let len = LENGTH_PREFIX_LEN + u32::from_be_bytes(prefix) as usize;
        // What `Outbox::try_push_frame` counted for the frame: a message
        // for DATA and DATA_REQ, and `Frame::payload`'s length for any kind.
        let body = len - LENGTH_PREFIX_LEN - 1;
        let (messages, payload) = match FrameKind::from_type_byte(run[at + LENGTH_PREFIX_LEN]) {
            Some(FrameKind::Data) => (1, body),
            Some(FrameKind::DataReq) => (1, body - size_of::<MsgId>()),
            // HELLO, HEARTBEAT, ACK: fixed fields, no payload.
            Some(_) => (0, 0),
            None => (0, body),
        };
        if at + len > taken {
            written.cut = Some(Cut { len, messages, payload });
            break;
        }
        written.len += len;
        written.frames += 1;
        written.messages += messages;
        written.payload += payload;
        at += len;
    }
    written
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use smartsock_framing::{Frame, MsgId};

    use super::{Cut, Written, whole_frames};

    #[test]
    fn a_write_is_walked_frame_by_frame_up_to_the_one_it_cut() {
        // 15, 37 and 21 bytes on the wire: a DATA of 10 bytes, a DATA_REQ
        // of 16 and an ACK (no payload, no message).
        let frames = [
            Frame::Data(Bytes::from(vec![1; 10])),
            Frame::DataReq { id: MsgId::from_bytes([2; 16]), payload: Bytes::from(vec![2; 16]) },
            Frame::Ack(MsgId::from_bytes([3; 16])),
        ];
        let mut run = BytesMut::new();
        for frame in &frames {
            frame.encode_into(&mut run);
        }
        assert_eq!(run.len(), 15 + 37 + 21);
        let whole = |len, frames, messages, payload, cut| Written { len, frames, messages, payload, cut };
        let data_req = Some(Cut { len: 37, messages: 1, payload: 16 });
        assert_eq!(whole_frames(&run, 0), whole(0, 0, 0, 0, None));
        assert_eq!(whole_frames(&run, 1), whole(0, 0, 0, 0, Some(Cut { len: 15, messages: 1, payload: 10 })));
        assert_eq!(whole_frames(&run, 15), whole(15, 1, 1, 10, None));
        assert_eq!(whole_frames(&run, 16), whole(15, 1, 1, 10, data_req));
        assert_eq!(whole_frames(&run, 51), whole(15, 1, 1, 10, data_req));
        assert_eq!(whole_frames(&run, 52), whole(52, 2, 2, 26, None));
        assert_eq!(
            whole_frames(&run, 60),
            whole(52, 2, 2, 26, Some(Cut { len: 21, messages: 0, payload: 0 }))
        );
        assert_eq!(whole_frames(&run, 73), whole(73, 3, 2, 26, None));
    }
}
