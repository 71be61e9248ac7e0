//! smartsock, through its public facade only.
//!
//! Variants: `oneway` `alo` sends at-least-once (the receiver is the same);
//! `oneway` `unix` runs over a Unix domain socket instead of TCP; `oneway`
//! `blocking` runs both ends on `smartsock-blocking` (see `sys_blocking.rs`);
//! `fanout` `wait` makes the publisher wait for a full subscriber instead of
//! dropping its copy (the default policy).
//!
//! Receive loops arm no timer per message (a tokio `timeout` reads the clock
//! and registers a timer on every call, where libzmq's RCVTIMEO and TCP's
//! SO_RCVTIMEO cost nothing): they end on the end marker, and the watchdog
//! and the harness bound the process.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use smartsock::{Delivery, SendMode, Socket, WhenFull};
use tokio::time::{sleep, timeout};

use crate::common::{
    self, Args, CLOCK_EVERY, END, END_REPEAT_EVERY, END_REPEAT_FOR, IDLE, Pacer, Res, RoundTrips, STALL,
    Tally,
};

pub(crate) fn run(args: &Args) -> Res {
    if args.variant == "blocking" {
        // Blocking calls may not run inside the runtime below.
        return crate::sys_blocking::run(args);
    }
    block_on(args, |args| async move {
        match (args.scenario.as_str(), args.role.as_str()) {
            ("oneway", "recv") => oneway_recv(&args).await,
            ("oneway", "send") => oneway_send(&args).await,
            ("latency", "server") => latency_server(&args).await,
            ("latency", "client") => latency_client(&args).await,
            ("fanout", "pub") => fanout_pub(&args).await,
            ("fanout", "sub") => fanout_sub(&args).await,
            ("memory", "recv") => memory_recv(&args).await,
            ("memory", "send") => memory_send(&args).await,
            _ => Err(args.unknown()),
        }
    })
}

/// Runs the role on the case's runtime (see [`runtime`]), in `block_on`
/// or, with `--task spawned`, in a task of its own.
pub(crate) fn block_on<F, Fut>(args: &Args, role: F) -> Res
where
    F: FnOnce(Args) -> Fut,
    Fut: Future<Output = Res> + Send + 'static,
{
    let runtime = runtime(args)?;
    let role = role(args.clone());
    if args.task == "spawned" {
        runtime.block_on(async { tokio::spawn(role).await.map_err(|e| format!("the role's task: {e}"))? })
    } else {
        runtime.block_on(role)
    }
}

/// One worker thread: a current-thread runtime; more: a multi-thread one,
/// its workers under `SCHED_BATCH` with `--sched batch`.
pub(crate) fn runtime(args: &Args) -> Res<tokio::runtime::Runtime> {
    if args.sched == "batch" && args.threads <= 1 {
        return Err("--sched batch needs a multi-thread runtime (--threads 2 or more)".into());
    }
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        if args.sched == "batch" {
            builder.on_thread_start(smartsock::prefer_batch_scheduling);
        }
        builder
    };
    builder.enable_all().build().map_err(|e| format!("tokio runtime: {e}"))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn bound(socket: &Socket) -> Res {
    bound_on(socket, "127.0.0.1:0").await
}

async fn bound_on(socket: &Socket, addr: &str) -> Res {
    let addr = socket.bind(addr).await.map_err(err)?;
    common::ready(addr);
    Ok(())
}

async fn connected(args: &Args, socket: &Socket) -> Res {
    socket.connect(&args.addr).map_err(err)?;
    socket.wait_for_peers(1).await;
    Ok(())
}

async fn oneway_recv(args: &Args) -> Res {
    let socket = Socket::new().map_err(err)?;
    match args.variant.as_str() {
        "unix" => bound_on(&socket, &common::unix_addr()).await?,
        _ => bound(&socket).await?,
    }
    let mut tally = Tally::default();
    while let Some(message) = socket.recv().await {
        if tally.take(message.len(), args.size) {
            break;
        }
    }
    tally.stop();
    common::report_oneway(&tally, args.size);
    socket.close().await;
    Ok(())
}

async fn oneway_send(args: &Args) -> Res {
    let delivery = match args.variant.as_str() {
        "default" | "unix" => Delivery::AtMostOnce,
        "alo" => Delivery::AtLeastOnce,
        _ => return Err(args.unknown()),
    };
    let socket = Socket::builder().delivery(delivery).build().map_err(err)?;
    connected(args, &socket).await?;
    let payload = args.payload();
    let deadline = Instant::now() + args.duration();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..CLOCK_EVERY {
            socket.send(Bytes::copy_from_slice(&payload)).await.map_err(err)?;
        }
        sent += CLOCK_EVERY;
    }
    socket.send(END).await.map_err(err)?;
    socket.close().await;
    common::result(&[("sent", sent.to_string())]);
    Ok(())
}

async fn latency_server(args: &Args) -> Res {
    let socket = Socket::new().map_err(err)?;
    bound(&socket).await?;
    while let Some((from, message)) = socket.recv_from().await {
        if message.len() != args.size {
            break;
        }
        socket.send_to(from, message).await.map_err(err)?;
    }
    socket.close().await;
    Ok(())
}

async fn latency_client(args: &Args) -> Res {
    let socket = Socket::new().map_err(err)?;
    connected(args, &socket).await?;
    let payload = args.payload();
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        socket.send(Bytes::copy_from_slice(&payload)).await.map_err(err)?;
        socket.recv().await.ok_or("socket closed while waiting for a reply")?;
        trips.done(started);
    }
    socket.send(END).await.map_err(err)?;
    socket.close().await;
    trips.report();
    Ok(())
}

async fn fanout_pub(args: &Args) -> Res {
    let when_full = match args.variant.as_str() {
        "default" => WhenFull::Drop,
        "wait" => WhenFull::Wait,
        _ => return Err(args.unknown()),
    };
    let socket = Socket::builder()
        .send_mode(SendMode::Publish)
        .when_subscriber_full(when_full)
        .build()
        .map_err(err)?;
    let stop = common::stdin_closed();
    bound(&socket).await?;
    socket.wait_for_peers(args.subs).await;
    let payload = args.payload();
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(Bytes::copy_from_slice(&payload)).await.map_err(err)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let drops = socket.slow_subscriber_drops();
    // The marker itself may be dropped for a full subscriber: repeat it
    // until the harness has heard from every subscriber.
    let until = Instant::now() + END_REPEAT_FOR;
    while !stop.load(Ordering::Acquire) && Instant::now() < until {
        socket.send(END).await.map_err(err)?;
        sleep(END_REPEAT_EVERY).await;
    }
    common::result(&[
        ("sent", args.count.to_string()),
        ("drops", drops.to_string()),
        ("secs", format!("{secs:.6}")),
    ]);
    drop(socket);
    Ok(())
}

async fn fanout_sub(args: &Args) -> Res {
    let mut tasks = Vec::new();
    for _ in 0..args.subs {
        let socket = Socket::new().map_err(err)?;
        socket.connect(&args.addr).map_err(err)?;
        let size = args.size;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(message) = socket.recv().await {
                if tally.take(message.len(), size) {
                    break;
                }
            }
            tally.stop();
            drop(socket);
            tally
        }));
    }
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await.map_err(err)?);
    }
    common::report_fanout(&tallies);
    Ok(())
}

async fn memory_recv(args: &Args) -> Res {
    let socket = Socket::new().map_err(err)?;
    bound(&socket).await?;
    // The first message shows the sender is up; the stall starts there.
    timeout(IDLE, socket.recv()).await.map_err(|_| "no sender")?.ok_or("closed")?;
    sleep(STALL).await;
    let mut pacer = Pacer::new();
    let mut msgs = 1u64;
    while let Some(message) = socket.recv().await {
        if message.len() != args.size {
            break;
        }
        msgs += 1;
        if let Some(pause) = pacer.tick() {
            sleep(pause).await;
        }
    }
    common::result(&[("msgs", msgs.to_string())]);
    socket.close().await;
    Ok(())
}

async fn memory_send(args: &Args) -> Res {
    let socket = Socket::new().map_err(err)?;
    connected(args, &socket).await?;
    let payload = args.payload();
    let base = common::vm_kib("VmRSS");
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(Bytes::copy_from_slice(&payload)).await.map_err(err)?;
    }
    socket.send(END).await.map_err(err)?;
    socket.close().await;
    common::report_memory(args.count, base, started);
    Ok(())
}
