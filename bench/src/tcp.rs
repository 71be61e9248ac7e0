//! Raw TCP, the ceiling: the same frames as aiomsg (u32 big-endian length,
//! a type byte, the payload), pre-framed into one buffer of about 1 MiB and
//! written with one `write_all` per buffer; the reader reads big chunks and
//! walks the frames in place, copying nothing. Blocking std sockets, no
//! runtime, no per-message allocation.
//!
//! Variant `tokio` is request/reply over tokio instead (`tcp_tokio.rs`).
//!
//! Variant `batch64k` writes buffers of about 64 KiB instead: on a VM whose
//! idle CPUs are slow to wake, each smaller write costs the reader a wake-up,
//! and that is no longer a ceiling for 1 KiB and 64 KiB messages.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use crate::common::{self, Args, END, IDLE, Pacer, Res, RoundTrips, STALL, Tally};

/// Frames are batched into buffers of at least this many bytes...
const BATCH_BYTES: usize = 1024 * 1024;
/// ...or this many under variant `batch64k`.
const SMALL_BATCH_BYTES: usize = 64 * 1024;
/// The reader's buffer.
const READ_BYTES: usize = 1024 * 1024;
/// Type byte of a DATA frame.
const DATA: u8 = 0x03;

pub(crate) fn run(args: &Args) -> Res {
    if args.variant == "tokio" {
        return crate::tcp_tokio::run(args);
    }
    match (args.scenario.as_str(), args.role.as_str()) {
        ("oneway", "recv") => oneway_recv(args),
        ("oneway", "send") => oneway_send(args),
        ("latency", "server") => latency_server(args),
        ("latency", "client") => latency_client(args),
        ("fanout", "pub") => fanout_pub(args),
        ("fanout", "sub") => fanout_sub(args),
        ("memory", "recv") => memory_recv(args),
        ("memory", "send") => memory_send(args),
        _ => return Err(args.unknown()),
    }
    .map_err(|e| format!("tcp: {e}"))
}

pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let envelope = u32::try_from(payload.len() + 1).expect("payloads are small");
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.extend_from_slice(&envelope.to_be_bytes());
    out.push(DATA);
    out.extend_from_slice(payload);
    out
}

/// As many frames of the payload as fill a batch (at least one), and their count.
fn batch(args: &Args) -> (Vec<u8>, u64) {
    let one = frame(&args.payload());
    let bytes = if args.variant == "batch64k" { SMALL_BATCH_BYTES } else { BATCH_BYTES };
    let count = bytes.div_ceil(one.len()).max(1);
    (one.repeat(count), count as u64)
}

/// The first `wanted` frames of a batch of `per_batch`, or all of it.
fn up_to(batch: &[u8], per_batch: u64, wanted: u64) -> &[u8] {
    let frame_len = batch.len() / per_batch as usize;
    &batch[..frame_len * wanted.min(per_batch) as usize]
}

fn listen() -> io::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    common::ready(listener.local_addr()?);
    Ok(listener)
}

fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    Ok(stream)
}

fn connect(args: &Args) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(&args.addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    Ok(stream)
}

/// Walks the frames of a stream in a big read buffer.
struct Frames {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frames {
    fn new(stream: TcpStream) -> Self {
        Self { stream, buf: vec![0; READ_BYTES], start: 0, end: 0 }
    }

    /// The payload length of the next frame; `None` at EOF or after `IDLE`.
    fn next_len(&mut self) -> io::Result<Option<usize>> {
        loop {
            let have = self.end - self.start;
            if have >= 4 {
                let head: [u8; 4] = self.buf[self.start..self.start + 4].try_into().expect("4 bytes");
                let envelope = u32::from_be_bytes(head) as usize;
                if have >= 4 + envelope {
                    self.start += 4 + envelope;
                    return Ok(Some(envelope.saturating_sub(1)));
                }
                if 4 + envelope > self.buf.len() {
                    self.buf.resize(4 + envelope, 0);
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end = have;
                self.start = 0;
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(None),
                Ok(n) => self.end += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

fn count(frames: &mut Frames, size: usize) -> io::Result<Tally> {
    let mut tally = Tally::default();
    while let Some(len) = frames.next_len()? {
        if tally.take(len, size) {
            break;
        }
    }
    tally.stop();
    Ok(tally)
}

fn oneway_recv(args: &Args) -> io::Result<()> {
    let listener = listen()?;
    let mut frames = Frames::new(accept(&listener)?);
    let tally = count(&mut frames, args.size)?;
    common::report_oneway(&tally, args.size);
    Ok(())
}

fn oneway_send(args: &Args) -> io::Result<()> {
    let mut stream = connect(args)?;
    let (batch, per_batch) = batch(args);
    let deadline = Instant::now() + args.duration();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        stream.write_all(&batch)?;
        sent += per_batch;
    }
    stream.write_all(&frame(END))?;
    stream.shutdown(std::net::Shutdown::Write)?;
    common::result(&[("sent", sent.to_string())]);
    Ok(())
}

fn latency_server(args: &Args) -> io::Result<()> {
    let listener = listen()?;
    let mut frames = Frames::new(accept(&listener)?);
    let reply = frame(&args.payload());
    while let Some(len) = frames.next_len()? {
        if len != args.size {
            break;
        }
        frames.write_all(&reply)?;
    }
    Ok(())
}

fn latency_client(args: &Args) -> io::Result<()> {
    let mut frames = Frames::new(connect(args)?);
    let request = frame(&args.payload());
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        frames.write_all(&request)?;
        frames.next_len()?.ok_or_else(|| io::Error::other("no reply"))?;
        trips.done(started);
    }
    frames.write_all(&frame(END))?;
    trips.report();
    Ok(())
}

fn fanout_pub(args: &Args) -> io::Result<()> {
    let listener = listen()?;
    let mut subscribers = (0..args.subs).map(|_| accept(&listener)).collect::<io::Result<Vec<_>>>()?;
    let (batch, per_batch) = batch(args);
    let started = Instant::now();
    let mut sent = 0;
    while sent < args.count {
        let bytes = up_to(&batch, per_batch, args.count - sent);
        for subscriber in &mut subscribers {
            subscriber.write_all(bytes)?;
        }
        sent += per_batch.min(args.count - sent);
    }
    let secs = started.elapsed().as_secs_f64();
    for subscriber in &mut subscribers {
        subscriber.write_all(&frame(END))?;
    }
    common::result(&[("sent", sent.to_string()), ("secs", format!("{secs:.6}"))]);
    Ok(())
}

fn fanout_sub(args: &Args) -> io::Result<()> {
    let tallies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.subs)
            .map(|_| {
                let stream = connect(args);
                scope.spawn(move || count(&mut Frames::new(stream?), args.size))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| io::Error::other("subscriber thread panicked"))?)
            .collect::<io::Result<Vec<_>>>()
    })?;
    common::report_fanout(&tallies);
    Ok(())
}

fn memory_recv(args: &Args) -> io::Result<()> {
    let listener = listen()?;
    let mut frames = Frames::new(accept(&listener)?);
    frames.next_len()?.ok_or_else(|| io::Error::other("no sender"))?;
    std::thread::sleep(STALL);
    let mut pacer = Pacer::new();
    let mut msgs = 1u64;
    while let Some(len) = frames.next_len()? {
        if len != args.size {
            break;
        }
        msgs += 1;
        if let Some(pause) = pacer.tick() {
            std::thread::sleep(pause);
        }
    }
    common::result(&[("msgs", msgs.to_string())]);
    Ok(())
}

fn memory_send(args: &Args) -> io::Result<()> {
    let mut stream = connect(args)?;
    let (batch, per_batch) = batch(args);
    let base = common::vm_kib("VmRSS");
    let started = Instant::now();
    let mut sent = 0;
    while sent < args.count {
        stream.write_all(up_to(&batch, per_batch, args.count - sent))?;
        sent += per_batch.min(args.count - sent);
    }
    stream.write_all(&frame(END))?;
    stream.shutdown(std::net::Shutdown::Write)?;
    common::report_memory(sent, base, started);
    Ok(())
}
