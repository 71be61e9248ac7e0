//! The `zeromq` crate (zmq.rs, pure Rust, on tokio).
//!
//! PUSH/PULL for one-way and memory, REQ/REP for latency, PUB/SUB for
//! fan-out. Its PUB cannot tell the application about subscriptions, so the
//! publisher waits for `--subs` accepted connections on its monitor and then
//! half a second for their subscriptions to arrive. Variant `fanout` `xpub`
//! uses its XPUB instead, which waits for each subscription and sends with
//! backpressure (lossless; zmq.rs's XPUB does not drop).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::{sleep, timeout};
use zeromq::{Socket, SocketEvent, SocketRecv, SocketSend, ZmqMessage};

use crate::common::{
    self, Args, CLOCK_EVERY, END, END_REPEAT_EVERY, END_REPEAT_FOR, IDLE, Pacer, Res, RoundTrips, STALL,
    Tally,
};
use crate::sys_smartsock::runtime;

/// Time given to subscriptions to reach a PUB after the connections are accepted.
const SUBSCRIPTIONS_SETTLE: Duration = Duration::from_millis(500);

pub(crate) fn run(args: &Args) -> Res {
    runtime(args)?.block_on(async {
        match (args.scenario.as_str(), args.role.as_str()) {
            ("oneway", "recv") => oneway_recv(args).await,
            ("oneway", "send") => oneway_send(args).await,
            ("latency", "server") => latency_server(args).await,
            ("latency", "client") => latency_client(args).await,
            ("fanout", "pub") => fanout_pub(args).await,
            ("fanout", "sub") => fanout_sub(args).await,
            ("memory", "recv") => memory_recv(args).await,
            ("memory", "send") => memory_send(args).await,
            _ => Err(args.unknown()),
        }
    })
}

fn err(e: impl std::fmt::Display) -> String {
    format!("zeromq: {e}")
}

async fn bound<S: Socket>(socket: &mut S) -> Res {
    let endpoint = socket.bind("tcp://127.0.0.1:0").await.map_err(err)?;
    common::ready(endpoint.to_string().trim_start_matches("tcp://"));
    Ok(())
}

async fn connected<S: Socket>(socket: &mut S, args: &Args) -> Res {
    socket.connect(&format!("tcp://{}", args.addr)).await.map_err(err)
}

/// The length of a one-frame message.
fn len(message: &ZmqMessage) -> usize {
    message.get(0).map_or(0, Bytes::len)
}

/// The next message, or `None` on an error. No timer per message (see
/// `sys_smartsock`): loops end on the end marker.
async fn next<S: SocketRecv>(socket: &mut S) -> Option<ZmqMessage> {
    socket.recv().await.ok()
}

async fn oneway_recv(args: &Args) -> Res {
    let mut socket = zeromq::PullSocket::new();
    bound(&mut socket).await?;
    let mut tally = Tally::default();
    while let Some(message) = next(&mut socket).await {
        if tally.take(len(&message), args.size) {
            break;
        }
    }
    tally.stop();
    common::report_oneway(&tally, args.size);
    Ok(())
}

async fn oneway_send(args: &Args) -> Res {
    let mut socket = zeromq::PushSocket::new();
    connected(&mut socket, args).await?;
    let payload = args.payload();
    let deadline = Instant::now() + args.duration();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..CLOCK_EVERY {
            socket.send(Bytes::copy_from_slice(&payload).into()).await.map_err(err)?;
        }
        sent += CLOCK_EVERY;
    }
    socket.send(Bytes::from_static(END).into()).await.map_err(err)?;
    linger(socket).await;
    common::result(&[("sent", sent.to_string())]);
    Ok(())
}

/// zmq.rs's close does not wait for queued messages to be written: keep
/// the socket open until the harness closes stdin (the receiver is done).
async fn linger<S: Socket>(socket: S) {
    let done = common::stdin_closed();
    let until = Instant::now() + END_REPEAT_FOR;
    while !done.load(Ordering::Acquire) && Instant::now() < until {
        sleep(END_REPEAT_EVERY).await;
    }
    let _ = socket.close().await;
}

async fn latency_server(args: &Args) -> Res {
    let mut socket = zeromq::RepSocket::new();
    bound(&mut socket).await?;
    while let Some(message) = next(&mut socket).await {
        if len(&message) != args.size {
            break;
        }
        socket.send(message).await.map_err(err)?;
    }
    Ok(())
}

async fn latency_client(args: &Args) -> Res {
    let mut socket = zeromq::ReqSocket::new();
    connected(&mut socket, args).await?;
    let payload = args.payload();
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        socket.send(Bytes::copy_from_slice(&payload).into()).await.map_err(err)?;
        next(&mut socket).await.ok_or("no reply")?;
        trips.done(started);
    }
    socket.send(Bytes::from_static(END).into()).await.map_err(err)?;
    let _ = socket.close().await;
    trips.report();
    Ok(())
}

async fn fanout_pub(args: &Args) -> Res {
    let stop = common::stdin_closed();
    match args.variant.as_str() {
        "default" => {
            let mut socket = zeromq::PubSocket::new();
            let mut events = socket.monitor();
            bound(&mut socket).await?;
            let mut accepted = 0;
            while accepted < args.subs {
                match timeout(Duration::from_secs(30), events.recv()).await {
                    Ok(Ok(SocketEvent::Accepted(..))) => accepted += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Err("waiting for subscribers".into()),
                }
            }
            sleep(SUBSCRIPTIONS_SETTLE).await;
            publish(&mut socket, args, &stop).await
        }
        "xpub" => {
            let mut socket = zeromq::XPubSocket::new();
            bound(&mut socket).await?;
            let mut subscribed = 0;
            while subscribed < args.subs {
                let note = timeout(Duration::from_secs(30), socket.recv())
                    .await
                    .map_err(|_| "waiting for subscribers")?
                    .map_err(err)?;
                if note.get(0).and_then(|frame| frame.first()) == Some(&1) {
                    subscribed += 1;
                }
            }
            publish(&mut socket, args, &stop).await
        }
        _ => Err(args.unknown()),
    }
}

async fn publish<S: SocketSend>(socket: &mut S, args: &Args, stop: &std::sync::atomic::AtomicBool) -> Res {
    let payload = args.payload();
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(Bytes::copy_from_slice(&payload).into()).await.map_err(err)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let until = Instant::now() + END_REPEAT_FOR;
    while !stop.load(Ordering::Acquire) && Instant::now() < until {
        socket.send(Bytes::from_static(END).into()).await.map_err(err)?;
        sleep(END_REPEAT_EVERY).await;
    }
    common::result(&[("sent", args.count.to_string()), ("secs", format!("{secs:.6}"))]);
    Ok(())
}

async fn fanout_sub(args: &Args) -> Res {
    let mut tasks = Vec::new();
    for _ in 0..args.subs {
        let mut socket = zeromq::SubSocket::new();
        connected(&mut socket, args).await?;
        socket.subscribe("").await.map_err(err)?;
        let size = args.size;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(message) = next(&mut socket).await {
                if tally.take(len(&message), size) {
                    break;
                }
            }
            tally.stop();
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
    let mut socket = zeromq::PullSocket::new();
    bound(&mut socket).await?;
    timeout(IDLE, socket.recv()).await.map_err(|_| "no sender")?.map_err(err)?;
    sleep(STALL).await;
    let mut pacer = Pacer::new();
    let mut msgs = 1u64;
    while let Some(message) = next(&mut socket).await {
        if len(&message) != args.size {
            break;
        }
        msgs += 1;
        if let Some(pause) = pacer.tick() {
            sleep(pause).await;
        }
    }
    common::result(&[("msgs", msgs.to_string())]);
    Ok(())
}

async fn memory_send(args: &Args) -> Res {
    let mut socket = zeromq::PushSocket::new();
    connected(&mut socket, args).await?;
    let payload = args.payload();
    let base = common::vm_kib("VmRSS");
    let started = Instant::now();
    for _ in 0..args.count {
        socket.send(Bytes::copy_from_slice(&payload).into()).await.map_err(err)?;
    }
    socket.send(Bytes::from_static(END).into()).await.map_err(err)?;
    common::report_memory(args.count, base, started);
    linger(socket).await;
    Ok(())
}
