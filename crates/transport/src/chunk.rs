//! [`Chunk`]: what a connection's writer takes out of its outbox, and
//! turns back into frames when they were never written.

use std::collections::VecDeque;

use bytes::BytesMut;
use smartsock_framing::Frame;

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
