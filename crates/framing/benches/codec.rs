//! Encode and decode throughput of [`Codec`] for DATA frames of 16 B, 64 B,
//! 1 KiB and 64 KiB payloads.
//!
//! Each iteration works on a batch of about 1 MiB of wire bytes (at least 16
//! frames). The `*_frames` groups report frames per second, the `*_bytes`
//! groups wire bytes (length prefix, type byte and payload) per second.
//!
//! ```text
//! cargo bench -p smartsock-framing --bench codec -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use smartsock_framing::{Codec, Frame};
use tokio_util::codec::{Decoder, Encoder};

const PAYLOAD_SIZES: [(usize, &str); 4] = [(16, "16B"), (64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

/// Wire bytes per batch.
const BATCH_BYTES: usize = 1024 * 1024;

/// A batch of DATA frames of `payload_len` bytes and its encoding.
struct Batch {
    frames: Vec<Frame>,
    wire: BytesMut,
}

impl Batch {
    fn new(payload_len: usize) -> Self {
        let payload = Bytes::from(vec![0xa5; payload_len]);
        let frame = Frame::Data(payload);
        let count = (BATCH_BYTES / frame.encoded_len()).max(16);
        let frames = vec![frame; count];
        let mut wire = BytesMut::new();
        let mut codec = Codec::new();
        for frame in &frames {
            codec.encode(frame, &mut wire).expect("within the default maximum");
        }
        Self { frames, wire }
    }

    fn throughput(&self, bytes: bool) -> Throughput {
        if bytes {
            Throughput::Bytes(self.wire.len() as u64)
        } else {
            Throughput::Elements(self.frames.len() as u64)
        }
    }
}

fn encode(c: &mut Criterion, group_name: &str, bytes: bool) {
    let mut group = c.benchmark_group(group_name);
    for (payload_len, name) in PAYLOAD_SIZES {
        let batch = Batch::new(payload_len);
        group.throughput(batch.throughput(bytes));
        let mut codec = Codec::new();
        // The buffer is reused, as a connection's write buffer is: this
        // measures encoding, not the allocator.
        let mut dst = BytesMut::with_capacity(batch.wire.len());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                dst.clear();
                for frame in &batch.frames {
                    codec.encode(black_box(frame), &mut dst).expect("within the default maximum");
                }
                black_box(&dst);
            });
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion, group_name: &str, bytes: bool) {
    let mut group = c.benchmark_group(group_name);
    for (payload_len, name) in PAYLOAD_SIZES {
        let batch = Batch::new(payload_len);
        group.throughput(batch.throughput(bytes));
        let mut codec = Codec::new();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched_ref(
                || batch.wire.clone(),
                |src| {
                    let mut decoded = 0;
                    while let Some(frame) = codec.decode(src).expect("well-formed stream") {
                        black_box(frame);
                        decoded += 1;
                    }
                    assert_eq!(decoded, batch.frames.len());
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    encode(c, "encode_frames", false);
    encode(c, "encode_bytes", true);
    decode(c, "decode_frames", false);
    decode(c, "decode_bytes", true);
}

// What `criterion_group!` and `criterion_main!` expand to, written out: the
// macros make an undocumented `pub fn`, which the workspace lints refuse.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
