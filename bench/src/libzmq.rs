//! libzmq 4.3 (built from source by zmq-sys) through the `zmq` crate, with
//! blocking calls from plain threads, as a C program would use it.
//!
//! PUSH/PULL for one-way and memory, REQ/REP for latency, XPUB/SUB for
//! fan-out (XPUB sends like PUB; it also shows the publisher each
//! subscription, so it can wait for every subscriber before publishing).
//! Variant `fanout` `nohwm` sets SNDHWM to 0 (no limit): nothing is dropped,
//! but the queues are unbounded. libzmq's lossless XPUB_NODROP has no safe
//! setter in the `zmq` crate, and this crate forbids unsafe code.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::common::{
    self, Args, CLOCK_EVERY, END, END_REPEAT_EVERY, END_REPEAT_FOR, IDLE, Pacer, Res, RoundTrips, STALL,
    Tally,
};

/// Milliseconds a sender lingers on close to deliver what is queued.
const LINGER_MS: i32 = 5000;

pub(crate) fn run(args: &Args) -> Res {
    let ctx = zmq::Context::new();
    match (args.scenario.as_str(), args.role.as_str()) {
        ("oneway", "recv") => oneway_recv(&ctx, args),
        ("oneway", "send") => oneway_send(&ctx, args),
        ("latency", "server") => latency_server(&ctx, args),
        ("latency", "client") => latency_client(&ctx, args),
        ("fanout", "pub") => fanout_pub(&ctx, args),
        ("fanout", "sub") => fanout_sub(&ctx, args),
        ("memory", "recv") => memory_recv(&ctx, args),
        ("memory", "send") => memory_send(&ctx, args),
        _ => Err(args.unknown()),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("libzmq: {e}")
}

fn idle_ms() -> i32 {
    i32::try_from(IDLE.as_millis()).unwrap_or(i32::MAX)
}

/// A socket bound to a free loopback port, announced to the harness.
fn bound(ctx: &zmq::Context, kind: zmq::SocketType) -> Res<zmq::Socket> {
    let socket = ctx.socket(kind).map_err(err)?;
    socket.set_rcvtimeo(idle_ms()).map_err(err)?;
    socket.bind("tcp://127.0.0.1:*").map_err(err)?;
    let endpoint = socket.get_last_endpoint().map_err(err)?.map_err(|_| "endpoint is not UTF-8")?;
    common::ready(endpoint.trim_start_matches("tcp://"));
    Ok(socket)
}

fn connected(ctx: &zmq::Context, kind: zmq::SocketType, args: &Args) -> Res<zmq::Socket> {
    let socket = ctx.socket(kind).map_err(err)?;
    socket.set_linger(LINGER_MS).map_err(err)?;
    socket.set_rcvtimeo(idle_ms()).map_err(err)?;
    socket.connect(&format!("tcp://{}", args.addr)).map_err(err)?;
    Ok(socket)
}

fn oneway_recv(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = bound(ctx, zmq::PULL)?;
    let mut message = zmq::Message::new();
    let mut tally = Tally::default();
    while socket.recv(&mut message, 0).is_ok() {
        if tally.take(message.len(), args.size) {
            break;
        }
    }
    tally.stop();
    common::report_oneway(&tally, args.size);
    Ok(())
}

fn oneway_send(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = connected(ctx, zmq::PUSH, args)?;
    let payload = args.payload();
    let deadline = Instant::now() + args.duration();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..CLOCK_EVERY {
            socket.send(&payload[..], 0).map_err(err)?;
        }
        sent += CLOCK_EVERY;
    }
    socket.send(END, 0).map_err(err)?;
    drop(socket);
    common::result(&[("sent", sent.to_string())]);
    Ok(())
}

fn latency_server(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = bound(ctx, zmq::REP)?;
    let mut message = zmq::Message::new();
    while socket.recv(&mut message, 0).is_ok() {
        if message.len() != args.size {
            break;
        }
        socket.send(&message[..], 0).map_err(err)?;
    }
    Ok(())
}

fn latency_client(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = connected(ctx, zmq::REQ, args)?;
    let payload = args.payload();
    let mut reply = zmq::Message::new();
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        socket.send(&payload[..], 0).map_err(err)?;
        socket.recv(&mut reply, 0).map_err(err)?;
        trips.done(started);
    }
    socket.send(END, 0).map_err(err)?;
    trips.report();
    Ok(())
}

fn fanout_pub(ctx: &zmq::Context, args: &Args) -> Res {
    let stop = common::stdin_closed();
    let socket = ctx.socket(zmq::XPUB).map_err(err)?;
    // Every subscription reaches the application, not only the first per topic.
    socket.set_xpub_verbose(true).map_err(err)?;
    match args.variant.as_str() {
        "default" => {}
        "nohwm" => socket.set_sndhwm(0).map_err(err)?,
        _ => return Err(args.unknown()),
    }
    socket.set_linger(0).map_err(err)?;
    socket.set_rcvtimeo(30_000).map_err(err)?;
    socket.bind("tcp://127.0.0.1:*").map_err(err)?;
    let endpoint = socket.get_last_endpoint().map_err(err)?.map_err(|_| "endpoint is not UTF-8")?;
    common::ready(endpoint.trim_start_matches("tcp://"));
    let mut subscribed = 0;
    while subscribed < args.subs {
        let note = socket.recv_bytes(0).map_err(|e| format!("waiting for subscribers: {e}"))?;
        if note.first() == Some(&1) {
            subscribed += 1;
        }
    }
    let payload = args.payload();
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(&payload[..], 0).map_err(err)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let until = Instant::now() + END_REPEAT_FOR;
    while !stop.load(Ordering::Acquire) && Instant::now() < until {
        socket.send(END, 0).map_err(err)?;
        std::thread::sleep(END_REPEAT_EVERY);
    }
    common::result(&[("sent", args.count.to_string()), ("secs", format!("{secs:.6}"))]);
    Ok(())
}

fn fanout_sub(ctx: &zmq::Context, args: &Args) -> Res {
    let tallies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.subs)
            .map(|_| {
                scope.spawn(|| -> Res<Tally> {
                    let socket = connected(ctx, zmq::SUB, args)?;
                    socket.set_subscribe(b"").map_err(err)?;
                    let mut message = zmq::Message::new();
                    let mut tally = Tally::default();
                    while socket.recv(&mut message, 0).is_ok() {
                        if tally.take(message.len(), args.size) {
                            break;
                        }
                    }
                    tally.stop();
                    Ok(tally)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "subscriber thread panicked".to_owned())?)
            .collect::<Res<Vec<Tally>>>()
    })?;
    common::report_fanout(&tallies);
    Ok(())
}

fn memory_recv(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = bound(ctx, zmq::PULL)?;
    let mut message = zmq::Message::new();
    // The first message shows the sender is up; the stall starts there.
    socket.recv(&mut message, 0).map_err(err)?;
    std::thread::sleep(STALL);
    let mut pacer = Pacer::new();
    let mut msgs = 1u64;
    while socket.recv(&mut message, 0).is_ok() {
        if message.len() != args.size {
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

fn memory_send(ctx: &zmq::Context, args: &Args) -> Res {
    let socket = connected(ctx, zmq::PUSH, args)?;
    let payload = args.payload();
    let base = common::vm_kib("VmRSS");
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(&payload[..], 0).map_err(err)?;
    }
    socket.send(END, 0).map_err(err)?;
    drop(socket);
    common::report_memory(args.count, base, started);
    Ok(())
}
