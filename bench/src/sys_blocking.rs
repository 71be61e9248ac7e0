//! smartsock-blocking: both ends on plain threads, the socket on the
//! runtime it owns (one worker thread), so the figures are what a threaded
//! program gets, next to the async socket's. One-way and request/reply;
//! `--sched other` turns the runtime's `SCHED_BATCH` off.

use std::time::Instant;

use bytes::Bytes;
use smartsock_blocking::Socket;

use crate::common::{self, Args, CLOCK_EVERY, END, Res, RoundTrips, Tally};

pub(crate) fn run(args: &Args) -> Res {
    match (args.scenario.as_str(), args.role.as_str()) {
        ("oneway", "recv") => oneway_recv(args),
        ("oneway", "send") => oneway_send(args),
        ("latency", "server") => latency_server(args),
        ("latency", "client") => latency_client(args),
        _ => Err(args.unknown()),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A socket on its own runtime, scheduled as `--sched` says.
fn own_socket(args: &Args) -> Res<Socket> {
    Socket::builder().batch_scheduling(args.sched != "other").build().map_err(err)
}

fn oneway_recv(args: &Args) -> Res {
    let socket = own_socket(args)?;
    common::ready(socket.bind("127.0.0.1:0").map_err(err)?);
    let mut tally = Tally::default();
    for message in &socket {
        if tally.take(message.len(), args.size) {
            break;
        }
    }
    tally.stop();
    common::report_oneway(&tally, args.size);
    socket.close();
    Ok(())
}

fn oneway_send(args: &Args) -> Res {
    let socket = own_socket(args)?;
    socket.connect(&args.addr).map_err(err)?;
    socket.wait_for_peers(1, args.duration()).then_some(()).ok_or("no peer")?;
    let payload = args.payload();
    let deadline = Instant::now() + args.duration();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..CLOCK_EVERY {
            socket.send(Bytes::copy_from_slice(&payload)).map_err(err)?;
        }
        sent += CLOCK_EVERY;
    }
    socket.send(END).map_err(err)?;
    socket.close();
    common::result(&[("sent", sent.to_string())]);
    Ok(())
}

fn latency_server(args: &Args) -> Res {
    let socket = own_socket(args)?;
    common::ready(socket.bind("127.0.0.1:0").map_err(err)?);
    while let Some((from, message)) = socket.recv_from() {
        if message.len() != args.size {
            break;
        }
        socket.send_to(from, message).map_err(err)?;
    }
    socket.close();
    Ok(())
}

fn latency_client(args: &Args) -> Res {
    let socket = own_socket(args)?;
    socket.connect(&args.addr).map_err(err)?;
    socket.wait_for_peers(1, args.duration()).then_some(()).ok_or("no peer")?;
    let payload = args.payload();
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        socket.send(Bytes::copy_from_slice(&payload)).map_err(err)?;
        socket.recv().ok_or("socket closed while waiting for a reply")?;
        trips.done(started);
    }
    socket.send(END).map_err(err)?;
    socket.close();
    trips.report();
    Ok(())
}
