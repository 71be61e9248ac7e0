//! Integration tests of [`Codec`] over a scripted reader, after tokio-util's
//! `tests/length_delimited.rs`: streams split at every byte, EOF inside a
//! frame, every malformed frame, the length limits, hostile length prefixes,
//! the exact bytes of each frame, and property tests over arbitrary frames.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use proptest::prelude::*;
use smartsock_framing::{
    Codec, DEFAULT_MAX_FRAME_LENGTH, Frame, FrameError, FrameKind, LENGTH_PREFIX_LEN, MAX_HEADER_LEN, MsgId,
    PROTOCOL_VERSION, PeerId,
};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

// ---------------------------------------------------------------------------
// The scripted reader
// ---------------------------------------------------------------------------

/// One step of a [`Mock`] reader's script.
#[derive(Debug, Clone)]
enum Step {
    /// The next read returns (at most) these bytes; what does not fit the
    /// caller's buffer is returned by the read after.
    Data(Vec<u8>),
    /// The next read is `Pending` (and wakes its task at once), as a socket
    /// would be between two segments.
    Pending,
}

/// An `AsyncRead` that plays a script of chunks, then reports EOF.
#[derive(Debug)]
struct Mock {
    script: VecDeque<Step>,
}

impl Mock {
    fn new(script: impl IntoIterator<Item = Step>) -> Self {
        Self { script: script.into_iter().collect() }
    }

    /// A reader that delivers `chunks` one read each, with a `Pending` between
    /// two chunks when `pending` is set. Empty chunks are left out: a read of
    /// no bytes is EOF.
    fn chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, pending: bool) -> Self {
        let mut script = Vec::new();
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            if pending && !script.is_empty() {
                script.push(Step::Pending);
            }
            script.push(Step::Data(chunk.to_vec()));
        }
        Self::new(script)
    }
}

impl AsyncRead for Mock {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.script.pop_front() {
            None => Poll::Ready(Ok(())),
            Some(Step::Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Data(mut data)) => {
                let n = data.len().min(buf.remaining());
                buf.put_slice(&data[..n]);
                if n < data.len() {
                    self.script.push_front(Step::Data(data.split_off(n)));
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// What a `FramedRead` yields, with the error in a comparable form (its
/// `Debug`, which names the variant and every field).
type Item = Result<Frame, String>;

/// Every item a `FramedRead` over `reader` yields until its stream ends.
fn read_all_with(reader: Mock, codec: Codec) -> Vec<Item> {
    let framed = FramedRead::new(reader, codec);
    futures::executor::block_on(framed.map(|item| item.map_err(|e| format!("{e:?}"))).collect())
}

fn read_all(reader: Mock) -> Vec<Item> {
    read_all_with(reader, Codec::new())
}

/// The items of a stream that carries exactly `frames` and ends cleanly.
fn ok_items(frames: &[Frame]) -> Vec<Item> {
    frames.iter().cloned().map(Ok).collect()
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("frame within the default maximum");
    }
    buf.to_vec()
}

/// Decodes `bytes` given at once, then at EOF, with `codec`.
fn decode_one(codec: &mut Codec, bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    codec.decode_eof(&mut buf)
}

// ---------------------------------------------------------------------------
// Fixed frames and their bytes, as PROTOCOL.md gives them
// ---------------------------------------------------------------------------

const IDENTITY: [u8; 16] =
    [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
const MSG_ID: [u8; 16] =
    [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf];

#[rustfmt::skip]
const HELLO_BYTES: [u8; 22] = [
    0x00, 0x00, 0x00, 0x12, // length 18
    0x01,                   // HELLO
    0x01,                   // version 1
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

#[rustfmt::skip]
const HEARTBEAT_BYTES: [u8; 5] = [
    0x00, 0x00, 0x00, 0x01, // length 1
    0x02,                   // HEARTBEAT
];

#[rustfmt::skip]
const DATA_BYTES: [u8; 7] = [
    0x00, 0x00, 0x00, 0x03, // length 3
    0x03,                   // DATA
    0x68, 0x69,             // "hi"
];

#[rustfmt::skip]
const DATA_REQ_BYTES: [u8; 23] = [
    0x00, 0x00, 0x00, 0x13, // length 19
    0x04,                   // DATA_REQ
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0x6f, 0x6b,             // "ok"
];

#[rustfmt::skip]
const ACK_BYTES: [u8; 21] = [
    0x00, 0x00, 0x00, 0x11, // length 17
    0x05,                   // ACK
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];

#[rustfmt::skip]
const UNKNOWN_BYTES: [u8; 8] = [
    0x00, 0x00, 0x00, 0x04, // length 4
    0x7f,                   // no known type
    0x01, 0x02, 0x03,
];

fn hello() -> Frame {
    Frame::hello(PeerId::from_bytes(IDENTITY))
}

fn data() -> Frame {
    Frame::Data(Bytes::from_static(b"hi"))
}

fn data_req() -> Frame {
    Frame::DataReq { id: MsgId::from_bytes(MSG_ID), payload: Bytes::from_static(b"ok") }
}

fn ack() -> Frame {
    Frame::Ack(MsgId::from_bytes(MSG_ID))
}

fn unknown() -> Frame {
    Frame::Unknown { kind: 0x7f, body: Bytes::from_static(&[1, 2, 3]) }
}

/// Each fixed frame with its exact bytes.
fn known_frames() -> Vec<(Frame, &'static [u8])> {
    vec![
        (hello(), &HELLO_BYTES),
        (Frame::Heartbeat, &HEARTBEAT_BYTES),
        (data(), &DATA_BYTES),
        (data_req(), &DATA_REQ_BYTES),
        (ack(), &ACK_BYTES),
        (unknown(), &UNKNOWN_BYTES),
    ]
}

/// A stream of every kind of frame, including empty payloads and the edge
/// unknown type bytes.
fn sample_frames() -> Vec<Frame> {
    vec![
        hello(),
        Frame::Heartbeat,
        data(),
        data_req(),
        ack(),
        unknown(),
        Frame::Data(Bytes::new()),
        Frame::DataReq { id: MsgId::from_bytes([0xff; 16]), payload: Bytes::new() },
        Frame::Unknown { kind: 0x00, body: Bytes::new() },
        Frame::Unknown { kind: 0xff, body: Bytes::from_static(b"extension") },
        Frame::Hello { version: 0x02, identity: PeerId::from_bytes([0x55; 16]) },
        Frame::Data(Bytes::from(vec![0xee; 300])),
    ]
}

// ---------------------------------------------------------------------------
// Exact bytes
// ---------------------------------------------------------------------------

#[test]
fn encodes_each_frame_to_the_protocols_bytes() {
    for (frame, bytes) in known_frames() {
        let mut buf = BytesMut::new();
        Codec::new().encode(&frame, &mut buf).unwrap();
        assert_eq!(&buf[..], bytes, "{frame:?}");
        // The owned-frame encoder writes the same.
        let mut owned = BytesMut::new();
        Codec::new().encode(frame.clone(), &mut owned).unwrap();
        assert_eq!(&owned[..], bytes, "{frame:?}");
        assert_eq!(frame.encoded_len(), bytes.len(), "{frame:?}");
        assert_eq!(frame.envelope_len(), bytes.len() - LENGTH_PREFIX_LEN, "{frame:?}");
    }
}

#[test]
fn decodes_the_protocols_bytes_to_each_frame() {
    for (frame, bytes) in known_frames() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(bytes);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame.clone()));
        assert!(buf.is_empty(), "{frame:?} left {} bytes", buf.len());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }
}

#[test]
fn hello_length_prefix_is_always_18() {
    for identity in [[0x00; 16], [0xff; 16], IDENTITY] {
        let mut buf = BytesMut::new();
        Codec::new().encode(Frame::hello(PeerId::from_bytes(identity)), &mut buf).unwrap();
        assert_eq!(&buf[..6], &[0x00, 0x00, 0x00, 0x12, 0x01, PROTOCOL_VERSION]);
        assert_eq!(buf.len(), 22);
    }
}

#[test]
fn header_then_payload_is_the_encoding() {
    let mut frames = sample_frames();
    frames.push(Frame::Data(Bytes::from(vec![7; 70_000])));
    for frame in frames {
        let header = frame.header();
        assert!(header.len() <= MAX_HEADER_LEN, "{frame:?}: header of {} bytes", header.len());
        let mut joined = header.to_vec();
        joined.extend_from_slice(frame.payload());
        let mut encoded = BytesMut::new();
        frame.encode_into(&mut encoded);
        assert_eq!(joined, &encoded[..], "{frame:?}");
        assert_eq!(header.as_ref(), &encoded[..header.len()], "{frame:?}");
    }
}

#[test]
fn header_and_payload_of_each_kind() {
    assert_eq!(&*hello().header(), &HELLO_BYTES[..]);
    assert!(hello().payload().is_empty());
    assert_eq!(&*Frame::Heartbeat.header(), &HEARTBEAT_BYTES[..]);
    assert_eq!(&*data().header(), &DATA_BYTES[..5]);
    assert_eq!(&data().payload()[..], b"hi");
    assert_eq!(&*data_req().header(), &DATA_REQ_BYTES[..21]);
    assert_eq!(&data_req().payload()[..], b"ok");
    assert_eq!(&*ack().header(), &ACK_BYTES[..]);
    assert_eq!(&*unknown().header(), &UNKNOWN_BYTES[..5]);
    assert_eq!(&unknown().payload()[..], &[1, 2, 3]);
}

// ---------------------------------------------------------------------------
// Partial reads
// ---------------------------------------------------------------------------

#[test]
fn whole_stream_in_one_read() {
    let frames = sample_frames();
    let wire = encode_all(&frames);
    assert_eq!(read_all(Mock::chunks([&wire[..]], false)), ok_items(&frames));
}

#[test]
fn stream_split_at_every_byte_position() {
    let frames = sample_frames();
    let wire = encode_all(&frames);
    for pending in [false, true] {
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(read_all(Mock::chunks([a, b], pending)), ok_items(&frames), "split at {at}");
        }
    }
}

#[test]
fn stream_split_at_every_pair_of_positions() {
    // Only the small frames: this is quadratic in the stream's length.
    let frames = vec![hello(), Frame::Heartbeat, data(), data_req(), ack(), unknown()];
    let wire = encode_all(&frames);
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let chunks = [&wire[..i], &wire[i..j], &wire[j..]];
            assert_eq!(read_all(Mock::chunks(chunks, true)), ok_items(&frames), "split at {i} and {j}");
        }
    }
}

#[test]
fn stream_one_byte_at_a_time() {
    let frames = sample_frames();
    let wire = encode_all(&frames);
    for pending in [false, true] {
        let reader = Mock::chunks(wire.chunks(1), pending);
        assert_eq!(read_all(reader), ok_items(&frames));
    }
}

#[test]
fn decoder_fed_one_byte_at_a_time_yields_each_frame_on_its_last_byte() {
    let frames = sample_frames();
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    for frame in &frames {
        let mut bytes = BytesMut::new();
        frame.encode_into(&mut bytes);
        let (last, init) = bytes.split_last().unwrap();
        for byte in init {
            buf.extend_from_slice(&[*byte]);
            assert_eq!(codec.decode(&mut buf).unwrap(), None, "{frame:?} decoded early");
        }
        buf.extend_from_slice(&[*last]);
        assert_eq!(codec.decode(&mut buf).unwrap().as_ref(), Some(frame));
        assert!(buf.is_empty());
    }
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

// ---------------------------------------------------------------------------
// EOF
// ---------------------------------------------------------------------------

#[test]
fn empty_stream_ends_cleanly() {
    assert_eq!(read_all(Mock::new([])), vec![]);
    assert_eq!(read_all(Mock::new([Step::Pending, Step::Data(vec![])])), vec![]);
}

#[test]
fn eof_between_frames_ends_the_stream() {
    let frames = [hello(), data()];
    let wire = encode_all(&frames);
    assert_eq!(read_all(Mock::chunks(wire.chunks(3), true)), ok_items(&frames));
    assert_eq!(decode_one(&mut Codec::new(), &[]).unwrap(), None);
}

#[test]
fn eof_inside_the_length_prefix_is_truncated() {
    for len in 1..LENGTH_PREFIX_LEN {
        let items = read_all(Mock::chunks([&DATA_BYTES[..len]], false));
        assert_eq!(items, vec![Err(format!("Truncated {{ buffered: {len} }}"))]);
        let err = decode_one(&mut Codec::new(), &DATA_BYTES[..len]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { buffered } if buffered == len), "{err:?}");
    }
}

#[test]
fn eof_inside_the_envelope_is_truncated() {
    for len in LENGTH_PREFIX_LEN..DATA_REQ_BYTES.len() {
        let items = read_all(Mock::chunks([&DATA_REQ_BYTES[..len]], false));
        assert_eq!(items, vec![Err(format!("Truncated {{ buffered: {len} }}"))]);
        let err = decode_one(&mut Codec::new(), &DATA_REQ_BYTES[..len]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { buffered } if buffered == len), "{err:?}");
    }
}

#[test]
fn eof_inside_an_envelope_whose_prefix_was_read_earlier_counts_the_prefix() {
    // The prefix is consumed by a `decode` that returns None; the count in
    // the error must still include it.
    let mut codec = Codec::new();
    let mut buf = BytesMut::from(&HELLO_BYTES[..10]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::Truncated { buffered: 10 }), "{err:?}");
}

#[test]
fn eof_at_every_position_inside_a_frame_keeps_the_frames_before_it() {
    let frames = [hello(), Frame::Heartbeat, data(), data_req(), ack(), unknown()];
    let wire = encode_all(&frames);
    let mut boundaries = vec![0];
    for frame in &frames {
        boundaries.push(boundaries.last().unwrap() + frame.encoded_len());
    }
    for end in 0..=wire.len() {
        let complete = boundaries.iter().rposition(|&b| b <= end).unwrap();
        let mut expected = ok_items(&frames[..complete]);
        let buffered = end - boundaries[complete];
        if buffered > 0 {
            expected.push(Err(format!("Truncated {{ buffered: {buffered} }}")));
        }
        assert_eq!(read_all(Mock::chunks(wire[..end].chunks(5), true)), expected, "EOF at {end}");
    }
}

// ---------------------------------------------------------------------------
// Malformed frames
// ---------------------------------------------------------------------------

/// A frame of type byte `kind` whose envelope holds `body_len` body bytes.
fn raw_frame(kind: u8, body_len: usize) -> Vec<u8> {
    let mut wire = u32::try_from(body_len + 1).unwrap().to_be_bytes().to_vec();
    wire.push(kind);
    wire.extend((0..body_len).map(|i| i as u8));
    wire
}

fn assert_bad_body(kind: FrameKind, body_len: usize, expected: &str) {
    let wire = raw_frame(kind.type_byte(), body_len);
    let err = decode_one(&mut Codec::new(), &wire).unwrap_err();
    assert!(
        matches!(&err, FrameError::BadBody { kind: k, actual, expected: e }
            if *k == kind && *actual == body_len && *e == expected),
        "{kind} with a {body_len}-byte body: {err:?}"
    );
    // Through a FramedRead the error ends the stream, after the frame before it.
    let mut stream = encode_all(&[Frame::Heartbeat]);
    stream.extend_from_slice(&wire);
    stream.extend_from_slice(&DATA_BYTES);
    let items = read_all(Mock::chunks(stream.chunks(7), false));
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(Frame::Heartbeat));
    assert_eq!(
        items[1],
        Err(format!("BadBody {{ kind: {kind:?}, actual: {body_len}, expected: {expected:?} }}"))
    );
}

#[test]
fn hello_body_must_be_17_bytes() {
    assert_bad_body(FrameKind::Hello, 16, "17");
    assert_bad_body(FrameKind::Hello, 18, "17");
    assert_bad_body(FrameKind::Hello, 0, "17");
    let frame = decode_one(&mut Codec::new(), &raw_frame(0x01, 17)).unwrap();
    let identity: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
    assert_eq!(frame, Some(Frame::Hello { version: 0x00, identity: PeerId::from_bytes(identity) }));
}

#[test]
fn data_req_body_must_be_at_least_16_bytes() {
    assert_bad_body(FrameKind::DataReq, 15, "at least 16");
    assert_bad_body(FrameKind::DataReq, 0, "at least 16");
    let frame = decode_one(&mut Codec::new(), &raw_frame(0x04, 16)).unwrap();
    let id: [u8; 16] = std::array::from_fn(|i| i as u8);
    assert_eq!(frame, Some(Frame::DataReq { id: MsgId::from_bytes(id), payload: Bytes::new() }));
}

#[test]
fn ack_body_must_be_16_bytes() {
    assert_bad_body(FrameKind::Ack, 15, "16");
    assert_bad_body(FrameKind::Ack, 17, "16");
    assert_bad_body(FrameKind::Ack, 0, "16");
    let frame = decode_one(&mut Codec::new(), &raw_frame(0x05, 16)).unwrap();
    assert_eq!(frame, Some(Frame::Ack(MsgId::from_bytes(std::array::from_fn(|i| i as u8)))));
}

#[test]
fn empty_envelope_is_refused() {
    let err = decode_one(&mut Codec::new(), &[0x00, 0x00, 0x00, 0x00]).unwrap_err();
    assert!(matches!(err, FrameError::EmptyEnvelope), "{err:?}");
    // Refused from the prefix alone, whatever follows.
    let err = Codec::new().decode(&mut BytesMut::from(&[0x00, 0x00, 0x00, 0x00][..])).unwrap_err();
    assert!(matches!(err, FrameError::EmptyEnvelope), "{err:?}");
    let mut stream = HEARTBEAT_BYTES.to_vec();
    stream.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    stream.extend_from_slice(&DATA_BYTES);
    let items = read_all(Mock::chunks(stream.chunks(1), true));
    assert_eq!(items, vec![Ok(Frame::Heartbeat), Err("EmptyEnvelope".to_owned())]);
}

#[test]
fn empty_bodies_that_the_protocol_allows() {
    assert_eq!(decode_one(&mut Codec::new(), &raw_frame(0x03, 0)).unwrap(), Some(Frame::Data(Bytes::new())));
    assert_eq!(decode_one(&mut Codec::new(), &raw_frame(0x02, 0)).unwrap(), Some(Frame::Heartbeat));
    for kind in [0x00, 0x06, 0x80, 0xff] {
        let frame = decode_one(&mut Codec::new(), &raw_frame(kind, 0)).unwrap();
        assert_eq!(frame, Some(Frame::Unknown { kind, body: Bytes::new() }));
    }
}

#[test]
fn unknown_frames_are_passed_up_and_decoding_goes_on() {
    let frames = [Frame::Unknown { kind: 0x06, body: Bytes::from_static(b"future") }, data()];
    let wire = encode_all(&frames);
    assert_eq!(read_all(Mock::chunks(wire.chunks(2), true)), ok_items(&frames));
}

// ---------------------------------------------------------------------------
// Maximum length
// ---------------------------------------------------------------------------

const SMALL_MAX: usize = 100;

fn small_codec() -> Codec {
    Codec::builder().max_frame_length(SMALL_MAX).build()
}

#[test]
fn decode_accepts_an_envelope_of_exactly_the_maximum() {
    // DATA: 1 type byte + 99 payload bytes = 100.
    let frame = Frame::Data(Bytes::from(vec![0x5a; SMALL_MAX - 1]));
    let mut wire = vec![0x00, 0x00, 0x00, 0x64, 0x03];
    wire.extend_from_slice(&[0x5a; SMALL_MAX - 1]);
    assert_eq!(decode_one(&mut small_codec(), &wire).unwrap(), Some(frame.clone()));
    let items = read_all_with(Mock::chunks(wire.chunks(9), true), small_codec());
    assert_eq!(items, vec![Ok(frame)]);
}

#[test]
fn decode_refuses_one_byte_over_the_maximum_from_the_prefix_alone() {
    let prefix = [0x00, 0x00, 0x00, 0x65]; // 101
    let err = small_codec().decode(&mut BytesMut::from(&prefix[..])).unwrap_err();
    assert!(matches!(err, FrameError::TooLong { length: 101, max: SMALL_MAX }), "{err:?}");
    // The prefix followed by less than a frame, and never more: no waiting for the rest.
    let mut wire = prefix.to_vec();
    wire.extend_from_slice(&[0x03, 0x00]);
    let items = read_all_with(Mock::new([Step::Data(wire), Step::Pending]), small_codec());
    assert_eq!(items, vec![Err("TooLong { length: 101, max: 100 }".to_owned())]);
}

#[test]
fn encode_accepts_exactly_the_maximum_and_refuses_one_more() {
    let mut codec = small_codec();
    let mut buf = BytesMut::new();
    let at_max = [
        Frame::Data(Bytes::from(vec![1; SMALL_MAX - 1])),
        Frame::DataReq { id: MsgId::from_bytes(MSG_ID), payload: Bytes::from(vec![2; SMALL_MAX - 17]) },
        Frame::Unknown { kind: 0x99, body: Bytes::from(vec![3; SMALL_MAX - 1]) },
    ];
    for frame in at_max {
        assert_eq!(frame.envelope_len(), SMALL_MAX);
        codec.check_len(&frame).unwrap();
        buf.clear();
        codec.encode(&frame, &mut buf).unwrap();
        assert_eq!(buf.len(), SMALL_MAX + LENGTH_PREFIX_LEN);
        assert_eq!(&buf[..4], &[0x00, 0x00, 0x00, 0x64]);
    }
    let over = [
        Frame::Data(Bytes::from(vec![1; SMALL_MAX])),
        Frame::DataReq { id: MsgId::from_bytes(MSG_ID), payload: Bytes::from(vec![2; SMALL_MAX - 16]) },
        Frame::Unknown { kind: 0x99, body: Bytes::from(vec![3; SMALL_MAX]) },
    ];
    for frame in over {
        buf.clear();
        let err = codec.encode(&frame, &mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLong { length: 101, max: SMALL_MAX }), "{err:?}");
        assert!(buf.is_empty(), "a refused frame wrote {} bytes", buf.len());
        let err = codec.check_len(&frame).unwrap_err();
        assert!(matches!(err, FrameError::TooLong { length: 101, max: SMALL_MAX }), "{err:?}");
    }
}

#[test]
fn default_maximum_is_16_mib() {
    assert_eq!(DEFAULT_MAX_FRAME_LENGTH, 16 * 1024 * 1024);
    assert_eq!(Codec::new().max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
    assert_eq!(Codec::default().max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
}

#[test]
fn default_maximum_refuses_a_prefix_of_16_mib_plus_one() {
    let err = Codec::new().decode(&mut BytesMut::from(&[0x01, 0x00, 0x00, 0x01][..])).unwrap_err();
    assert!(
        matches!(err, FrameError::TooLong { length: 16_777_217, max: DEFAULT_MAX_FRAME_LENGTH }),
        "{err:?}"
    );
    // Exactly 16 MiB is a length to wait for, not an error.
    let mut codec = Codec::new();
    let mut buf = BytesMut::from(&[0x01, 0x00, 0x00, 0x00, 0x03][..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn default_maximum_encode_boundary() {
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    let at_max = Frame::Data(Bytes::from(vec![0; DEFAULT_MAX_FRAME_LENGTH - 1]));
    codec.encode(&at_max, &mut buf).unwrap();
    assert_eq!(buf.len(), DEFAULT_MAX_FRAME_LENGTH + LENGTH_PREFIX_LEN);
    assert_eq!(&buf[..5], &[0x01, 0x00, 0x00, 0x00, 0x03]);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(at_max));

    let over = Frame::Data(Bytes::from(vec![0; DEFAULT_MAX_FRAME_LENGTH]));
    buf.clear();
    let err = codec.encode(&over, &mut buf).unwrap_err();
    assert!(
        matches!(err, FrameError::TooLong { length: 16_777_217, max: DEFAULT_MAX_FRAME_LENGTH }),
        "{err:?}"
    );
    assert!(buf.is_empty());
}

#[test]
fn maximum_is_clamped_to_the_range_a_prefix_can_say() {
    assert_eq!(Codec::builder().max_frame_length(0).build().max_frame_length(), 1);
    assert_eq!(Codec::builder().max_frame_length(usize::MAX).build().max_frame_length(), u32::MAX as usize);
    // With a maximum of 1 only bare type bytes pass.
    let mut one = Codec::builder().max_frame_length(0).build();
    assert_eq!(decode_one(&mut one, &HEARTBEAT_BYTES).unwrap(), Some(Frame::Heartbeat));
    let err = decode_one(&mut one, &DATA_BYTES).unwrap_err();
    assert!(matches!(err, FrameError::TooLong { length: 3, max: 1 }), "{err:?}");
}

// ---------------------------------------------------------------------------
// Hostile length prefixes
// ---------------------------------------------------------------------------

#[test]
fn u32_max_prefix_is_refused_without_allocating() {
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX_LEN);
    buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let capacity = buf.capacity();
    let err = Codec::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, FrameError::TooLong { length: 4_294_967_295, max: DEFAULT_MAX_FRAME_LENGTH }),
        "{err:?}"
    );
    assert!(buf.capacity() <= capacity, "the read buffer grew");
}

#[test]
fn u32_max_prefix_through_framed_read_does_not_grow_its_buffer() {
    let reader = Mock::new([Step::Data(vec![0xff, 0xff, 0xff, 0xff]), Step::Pending]);
    let mut framed = FramedRead::new(reader, Codec::new());
    let capacity = framed.read_buffer().capacity();
    let first = futures::executor::block_on(framed.next());
    assert!(
        matches!(
            first,
            Some(Err(FrameError::TooLong { length: 4_294_967_295, max: DEFAULT_MAX_FRAME_LENGTH }))
        ),
        "{first:?}"
    );
    assert!(framed.read_buffer().capacity() <= capacity, "the read buffer grew");
    assert!(futures::executor::block_on(framed.next()).is_none(), "the stream goes on after an error");
}

#[test]
fn accepted_huge_prefix_reserves_nothing_for_it() {
    // With the largest possible maximum, u32::MAX is a length to wait for:
    // still nothing may be reserved for it before its bytes arrive.
    let codec = Codec::builder().max_frame_length(usize::MAX).build();
    let mut wire = vec![0xff, 0xff, 0xff, 0xff, 0x03];
    wire.extend_from_slice(&[0; 100]);
    let mut framed = FramedRead::new(Mock::chunks(wire.chunks(10), true), codec);
    let capacity = framed.read_buffer().capacity();
    let first = futures::executor::block_on(framed.next());
    assert!(matches!(first, Some(Err(FrameError::Truncated { buffered: 105 }))), "{first:?}");
    assert!(framed.read_buffer().capacity() <= capacity, "the read buffer grew");

    // And the same for the default maximum's largest legal length.
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0x03, 0x00]);
    let capacity = buf.capacity();
    let mut codec = Codec::new();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() <= capacity, "the read buffer grew");
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=2048).prop_map(Bytes::from)
}

fn any_frame() -> impl Strategy<Value = Frame> {
    let unknown_kind = prop_oneof![Just(0x00u8), 0x06u8..=0xff];
    prop_oneof![
        (any::<u8>(), any::<[u8; 16]>())
            .prop_map(|(version, id)| Frame::Hello { version, identity: PeerId::from_bytes(id) }),
        Just(Frame::Heartbeat),
        payload().prop_map(Frame::Data),
        (any::<[u8; 16]>(), payload())
            .prop_map(|(id, payload)| Frame::DataReq { id: MsgId::from_bytes(id), payload }),
        any::<[u8; 16]>().prop_map(|id| Frame::Ack(MsgId::from_bytes(id))),
        (unknown_kind, payload()).prop_map(|(kind, body)| Frame::Unknown { kind, body }),
    ]
}

proptest! {
    #[test]
    fn any_frame_round_trips(frame in any_frame()) {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        codec.encode(&frame, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), frame.encoded_len());
        let mut joined = frame.header().to_vec();
        joined.extend_from_slice(frame.payload());
        prop_assert_eq!(&joined[..], &buf[..]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn any_chunking_of_any_frames_decodes_the_same_frames(
        frames in prop::collection::vec(any_frame(), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        pending in any::<bool>(),
    ) {
        let wire = encode_all(&frames);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();
        let chunks = cuts.windows(2).map(|w| &wire[w[0]..w[1]]);
        prop_assert_eq!(read_all(Mock::chunks(chunks, pending)), ok_items(&frames));
    }
}
