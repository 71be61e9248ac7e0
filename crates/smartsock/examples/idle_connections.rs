//! Many idle connections to one bind end, kept alive by heartbeats, and what
//! each costs in memory: the resident set (RSS) of this process, the bind
//! end, before the connections and after they have been idle for a while.
//!
//! The connect ends run in a second process (this program again, started
//! with `--clients`), so that each process stays under its file descriptor
//! limit and the figure is the bind end's alone. They are plain TCP peers
//! that speak the protocol by hand (HELLO, then a HEARTBEAT every interval),
//! so that they cost little themselves.
//!
//! ```text
//! cargo run --release -p smartsock --example idle_connections -- --connections 10000 --hold 20 --heartbeat 5
//! cargo xtask idle --connections 10000          # the same
//! ```
//!
//! Without arguments it runs a small, quick version (200 connections, a
//! one-second heartbeat), which `cargo xtask examples` runs.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smartsock::transport::TransportConfig;
use smartsock::{PeerId, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Handshakes a client runs at once: under the bind end's default of 8
/// pending handshakes per address.
const CONCURRENT_HANDSHAKES: usize = 4;

struct Options {
    connections: usize,
    /// How long the connections stay idle before the last measurement.
    hold: Duration,
    heartbeat: Duration,
    /// `--clients ADDR`: this process is the connect ends.
    clients: Option<String>,
}

fn parse() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        connections: 200,
        hold: Duration::from_secs(4),
        heartbeat: Duration::from_secs(1),
        clients: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--connections" => options.connections = value()?.parse()?,
            "--hold" => options.hold = Duration::from_secs_f64(value()?.parse()?),
            "--heartbeat" => options.heartbeat = Duration::from_secs_f64(value()?.parse()?),
            "--clients" => options.clients = Some(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let options = parse()?;
    match &options.clients {
        Some(addr) => clients(addr, &options).await,
        None => server(&options).await,
    }
}

/// This process's resident set, in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn server(options: &Options) -> Result<(), Box<dyn Error>> {
    let n = options.connections;
    let mut config = TransportConfig::default();
    config.max_peers = n;
    config.max_peers_per_address = n;
    config.heartbeat_interval = options.heartbeat;
    config.heartbeat_timeout = options.heartbeat * 3;
    let socket = Socket::builder().transport_config(config).build()?;
    let addr = socket.bind("127.0.0.1:0").await?;
    // Everything but the connections is in place: the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_kib();

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--clients", &addr.to_string(), "--connections", &n.to_string()])
        .args(["--heartbeat", &options.heartbeat.as_secs_f64().to_string()])
        .stdin(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let connected =
        tokio::time::timeout(Duration::from_secs(60) + options.heartbeat * 3, socket.wait_for_peers(n))
            .await
            .unwrap_or(false);
    if !connected {
        let _ = child.kill();
        return Err(format!("only {} of {n} peers connected", socket.peers().len()).into());
    }
    let up = rss_kib();
    println!("{n} connections up in {:.1} s", started.elapsed().as_secs_f64());

    // Idle: only heartbeats, both ways, for the hold.
    tokio::time::sleep(options.hold).await;
    let held = rss_kib();
    let still = socket.peers().len();
    // Every peer that came up is still up: none left and came back.
    let connections = socket.stats().connections;
    let _ = child.kill();
    let _ = child.wait();

    let per_connection = |rss: u64| (rss.saturating_sub(baseline)) as f64 / n as f64;
    println!(
        "bind end RSS: {baseline} KiB before, {up} KiB with {n} up, {held} KiB after {:?} idle",
        options.hold
    );
    println!(
        "per connection: {:.1} KiB once up, {:.1} KiB after the hold",
        per_connection(up),
        per_connection(held)
    );
    if still != n || connections != n as u64 {
        return Err(format!("{still} of {n} peers up after the hold, {connections} connections made").into());
    }
    socket.close().await;
    Ok(())
}

/// The connect ends: `n` raw peers, each a HELLO and then a HEARTBEAT every
/// interval; they end when the bind end's process closes our stdin or
/// kills us.
async fn clients(addr: &str, options: &Options) -> Result<(), Box<dyn Error>> {
    let permits = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    let heartbeat = options.heartbeat;
    for _ in 0..options.connections {
        let permit = permits.clone().acquire_owned().await?;
        let addr = addr.to_owned();
        tokio::spawn(async move {
            if let Err(e) = peer(&addr, heartbeat, permit).await {
                eprintln!("client: {e}");
            }
        });
    }
    // Until the bind end is done with us.
    let mut stdin = tokio::io::stdin();
    let _ = stdin.read(&mut [0u8; 1]).await;
    Ok(())
}

async fn peer(
    addr: &str,
    heartbeat: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut hello = vec![0, 0, 0, 0x12, 0x01, 0x01];
    hello.extend_from_slice(PeerId::random().as_bytes());
    stream.write_all(&hello).await?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    // The bind end's HELLO (22 bytes) ends the handshake.
    while got < 22 {
        let n = stream.read(&mut buf[got.min(63)..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        got += n;
    }
    drop(permit);
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => if read? == 0 { return Ok(()) },
            _ = tick.tick() => stream.write_all(&[0, 0, 0, 1, 0x02]).await?,
        }
    }
}
