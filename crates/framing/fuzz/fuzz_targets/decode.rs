//! Feeds arbitrary bytes to [`Codec`] as a peer's stream.
//!
//! Input: a config byte (which maximum frame length), a chunk-size byte, then
//! the wire bytes. The wire is decoded in chunks of that size and again in
//! one piece, then at EOF. Checked, besides "no panic":
//!
//! - every decoded frame re-encodes to exactly the bytes it was decoded from;
//! - `decode` returning `None` never leaves a complete frame behind;
//! - every error is the one the bytes call for, with the right fields;
//! - the read buffer's capacity stays within a small multiple of the input,
//!   whatever a length prefix claims (libFuzzer's `-malloc_limit_mb` needs a
//!   sanitizer to work, so this is the allocation check under `-s none`);
//! - chunking changes nothing: both decodes give the same frames and error.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smartsock_framing::{Codec, DEFAULT_MAX_FRAME_LENGTH, Frame, FrameError, FrameKind, LENGTH_PREFIX_LEN};
use tokio_util::codec::{Decoder, Encoder};

/// What the read buffer may hold beyond twice the input: `BytesMut` grows by
/// doubling and keeps a small minimum, never by what a prefix claims.
const SLACK: usize = 64;

fuzz_target!(|input: &[u8]| {
    let Some((&[config, chunk], wire)) = input.split_first_chunk::<2>() else {
        return;
    };
    let max = match config % 4 {
        0 => 1024 * 1024,
        1 => DEFAULT_MAX_FRAME_LENGTH,
        // Small maxima make the limit itself reachable.
        2 => usize::from(config / 4),
        // Clamped to u32::MAX: any prefix is a length to wait for.
        _ => usize::MAX,
    };
    let chunked = decode(max, wire, usize::from(chunk) + 1);
    let whole = decode(max, wire, wire.len().max(1));
    assert_eq!(chunked, whole, "chunking changed the outcome");
});

/// The frames decoded, and the error that ended the stream (as its `Debug`).
type Outcome = (Vec<Frame>, Option<String>);

fn decode(max: usize, wire: &[u8], chunk: usize) -> Outcome {
    let mut codec = Codec::builder().max_frame_length(max).build();
    let max = codec.max_frame_length();
    let capacity_bound = 2 * wire.len() + SLACK;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Bytes of `wire` given to the codec, and where the next frame starts.
    let mut fed = 0;
    let mut start = 0;

    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let result = codec.decode(&mut buf);
            assert!(
                buf.capacity() <= capacity_bound,
                "buffer of {} for {} input bytes",
                buf.capacity(),
                wire.len()
            );
            match result {
                Ok(Some(frame)) => {
                    let end = fed - buf.len();
                    check_frame(&frame, &wire[start..end], max);
                    start = end;
                    frames.push(frame);
                }
                Ok(None) => {
                    check_incomplete(&wire[start..fed], max);
                    break;
                }
                Err(err) => {
                    check_error(&err, &wire[start..fed], max, false);
                    return (frames, Some(format!("{err:?}")));
                }
            }
        }
    }
    assert_eq!(fed, wire.len());
    // Every complete frame was decoded above, so at EOF there is nothing left
    // to decode: either the stream ended between frames or inside one.
    let result = codec.decode_eof(&mut buf);
    assert!(buf.capacity() <= capacity_bound, "buffer of {} for {} input bytes", buf.capacity(), wire.len());
    match result {
        Ok(Some(frame)) => panic!("decode_eof found a frame decode had left: {frame:?}"),
        Ok(None) => {
            assert_eq!(start, wire.len(), "clean EOF with bytes of a frame left");
            (frames, None)
        }
        Err(err) => {
            check_error(&err, &wire[start..], max, true);
            (frames, Some(format!("{err:?}")))
        }
    }
}

fn prefix(bytes: &[u8]) -> usize {
    let prefix: [u8; LENGTH_PREFIX_LEN] = bytes[..LENGTH_PREFIX_LEN].try_into().unwrap();
    u32::from_be_bytes(prefix) as usize
}

/// `bytes` are exactly the frame they were decoded into.
fn check_frame(frame: &Frame, bytes: &[u8], max: usize) {
    assert!(bytes.len() > LENGTH_PREFIX_LEN, "{frame:?} from {} bytes", bytes.len());
    let length = prefix(bytes);
    assert_eq!(length + LENGTH_PREFIX_LEN, bytes.len(), "{frame:?}: prefix disagrees with bytes consumed");
    assert!((1..=max).contains(&length), "{frame:?}: envelope of {length} over maximum {max}");
    assert_eq!(frame.type_byte(), bytes[LENGTH_PREFIX_LEN], "{frame:?}");
    if let Frame::Heartbeat = frame {
        // The codec ignores a HEARTBEAT's body, so only an empty one re-encodes
        // to the same bytes.
        if length > 1 {
            return;
        }
    }
    let mut encoded = BytesMut::new();
    Codec::builder().max_frame_length(max).build().encode(frame, &mut encoded).expect("re-encode");
    assert_eq!(&encoded[..], bytes, "{frame:?} re-encodes to other bytes");
    assert_eq!(frame.encoded_len(), bytes.len());
}

/// `decode` said `None`: the bytes after the last frame are not a whole frame yet.
fn check_incomplete(pending: &[u8], max: usize) {
    if pending.len() >= LENGTH_PREFIX_LEN {
        let length = prefix(pending);
        assert!((1..=max).contains(&length), "waiting on a bad prefix {length}");
        assert!(pending.len() < LENGTH_PREFIX_LEN + length, "a complete frame was left undecoded");
    }
}

/// `err` is the error that `rest` (the bytes from the start of the failing
/// frame) calls for.
fn check_error(err: &FrameError, rest: &[u8], max: usize, at_eof: bool) {
    match *err {
        FrameError::TooLong { length, max: said_max } => {
            assert_eq!(said_max, max);
            assert_eq!(length, prefix(rest) as u64);
            assert!(length > max as u64);
        }
        FrameError::EmptyEnvelope => assert_eq!(prefix(rest), 0),
        FrameError::BadBody { kind, actual, expected: _ } => {
            let length = prefix(rest);
            assert!(rest.len() >= LENGTH_PREFIX_LEN + length);
            assert!(length <= max);
            assert_eq!(rest[LENGTH_PREFIX_LEN], kind.type_byte());
            assert_eq!(actual, length - 1);
            let broken = match kind {
                FrameKind::Hello => actual != 17,
                FrameKind::DataReq => actual < 16,
                FrameKind::Ack => actual != 16,
                _ => false,
            };
            assert!(broken, "{kind} body of {actual} bytes refused");
        }
        FrameError::Truncated { buffered } => {
            assert!(at_eof, "Truncated before EOF");
            assert!(buffered > 0);
            assert_eq!(buffered, rest.len());
        }
        _ => panic!("unexpected error {err:?}"),
    }
}
