//! `cargo xtask interop`: smartsock against the aiomsg Python package from
//! PyPI, each side in its own process, over loopback.
//!
//! Makes a venv in `<target dir>/interop-venv` with `aiomsg` pinned (skipped
//! when it is there already), builds the `smartsock` binary, then runs the
//! scenarios below, each with a deadline, printing PASS or FAIL and the time
//! of each. The Python side is `interop/agent.py` (the aiomsg conformance
//! agent over the package's API; the package ships none), plus small
//! scripts: `raw_peer.py` speaks the wire protocol by hand, `idle.py` watches
//! an idle link, `ws_peer.py` speaks it inside WebSocket binary messages
//! (the `websockets` package), and `certs.py` makes the TLS scenarios'
//! certificates (the `trustme` package). The smartsock side is
//! `smartsock agent`, `send` and `recv`.
//!
//! Every process started is killed when its scenario ends, however it ends.
//! The two 20-second heartbeat scenarios run on threads beside the others.

use std::collections::BTreeSet;
use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run_in};

/// The aiomsg release the scenarios run against.
const AIOMSG_VERSION: &str = "2026.7.1";
/// The other PyPI packages of the venv: a WebSocket client, a test CA.
const PACKAGES: [(&str, &str); 3] =
    [("aiomsg", AIOMSG_VERSION), ("websockets", "17.4"), ("trustme", "1.2.1")];
/// Messages per source in the matrix.
const COUNT: usize = 20;
/// Time allowed to one scenario, every wait included.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long the idle link must stay up.
const IDLE_SECS: &str = "20";
/// Fixed identities for the by-identity scenarios.
const PY_P: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const PY_Q: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
const RS_S: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const RS_T: &str = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0";

/// A scenario: its name and what it runs.
type Case = (&'static str, fn(&Scene) -> Result);

/// Everything but the send/receive matrix, in the order run.
const CASES: [Case; 17] = [
    ("round-robin: smartsock source -> two aiomsg sinks, half each", two_sinks),
    ("by identity: smartsock send_to / recv_from <-> aiomsg identities", rust_by_identity),
    ("by identity: aiomsg send(identity) / recv_identity <-> smartsock identities", py_by_identity),
    ("buffering: smartsock bind source sends before any aiomsg peer connects", |s| buffered(s, "bind")),
    ("buffering: smartsock connect source sends before the aiomsg bind exists", |s| buffered(s, "connect")),
    ("HELLO + first DATA in one write, to a smartsock bind end", |s| hello_data(s, "bind")),
    ("HELLO + first DATA in one write, to a smartsock connect end", |s| hello_data(s, "connect")),
    ("restart: aiomsg bind end restarted, smartsock connect end reconnects", py_restart),
    ("restart: smartsock bind end restarted, aiomsg connect end reconnects", rust_restart),
    ("at-least-once aiomsg -> smartsock: ACK within 1 s, delivered once", ack_in_time),
    ("at-least-once smartsock -> aiomsg: every message acknowledged", acked_by_aiomsg),
    ("TLS: smartsock source (bind, TLS server) -> aiomsg sink (connect)", |s| tls_pair(s, Impl::Smartsock)),
    ("TLS: aiomsg source (bind, TLS server) -> smartsock sink (connect)", |s| tls_pair(s, Impl::Aiomsg)),
    ("WebSocket: Python websockets client <-> smartsock bind end (echo), ws", |s| ws_client(s, false)),
    ("WebSocket: Python websockets client <-> smartsock bind end (echo), wss", |s| ws_client(s, true)),
    ("WebSocket: smartsock ws:// connect end -> aiomsg bind end", |s| ws_to_aiomsg(s, false)),
    ("WebSocket: smartsock wss:// connect end -> aiomsg TLS bind end", |s| ws_to_aiomsg(s, true)),
];

/// The slow ones (20 s of idling each), run on threads beside the others.
const IDLE_CASES: [Case; 2] = [
    ("heartbeats: idle smartsock bind <-> aiomsg connect link stays up 20 s", |s| idle_link(s, "bind")),
    ("heartbeats: idle smartsock connect <-> aiomsg bind link stays up 20 s", |s| idle_link(s, "connect")),
];

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(extra) = args.first() {
        return Err(format!("interop takes no arguments (got {extra:?})"));
    }
    let started = Instant::now();
    let python = python_with_packages()?;
    cargo(&["build", "-p", "smartsock-cli"], &[])?;
    let smartsock = target_dir().join("debug").join(format!("smartsock{}", env::consts::EXE_SUFFIX));
    if !smartsock.exists() {
        return Err(format!("cargo built no {}", smartsock.display()));
    }
    let scripts = root().join("interop");
    // Fresh certificates every run: nothing to expire between runs.
    let certs = target_dir().join("interop-certs");
    run_in(Command::new(&python).arg(scripts.join("certs.py")).arg(&certs), &root())?;
    let tools = Tools { smartsock, python, scripts, certs };
    let tally = Arc::new(Tally::default());
    println!("\n==> interop scenarios: smartsock (Rust) and aiomsg {AIOMSG_VERSION} (Python)");
    let scenarios_started = Instant::now();

    let background: Vec<_> = IDLE_CASES
        .into_iter()
        .map(|(name, body)| {
            let (tools, tally) = (tools.clone(), tally.clone());
            thread::spawn(move || scenario(&tools, &tally, name, DEADLINE + Duration::from_secs(15), body))
        })
        .collect();

    let matrix =
        [("publish", "at-most-once"), ("roundrobin", "at-most-once"), ("roundrobin", "at-least-once")];
    for source in [Impl::Smartsock, Impl::Aiomsg] {
        for source_role in ["bind", "connect"] {
            for (mode, delivery) in matrix {
                let (sink, sink_role) = (source.other().name(), other_role(source_role));
                let name = format!(
                    "{} source ({source_role}) -> {sink} sink ({sink_role}), {mode}, {delivery}",
                    source.name()
                );
                scenario(&tools, &tally, &name, DEADLINE, |s| pair(s, source, source_role, mode, delivery));
            }
        }
    }
    println!(
        "SKIP           publish + at-least-once: refused by design (one ACK cannot stand for every subscriber)"
    );
    let skipped = 1;
    for (name, body) in CASES {
        scenario(&tools, &tally, name, DEADLINE, body);
    }

    for handle in background {
        handle.join().map_err(|_| "a heartbeat scenario panicked".to_owned())?;
    }
    let (passed, failed) = tally.counts();
    println!(
        "\ninterop: scenarios {:.1}s, {:.1}s with setup and build",
        scenarios_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("interop: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 { Err(format!("{failed} interop scenario(s) failed")) } else { Ok(()) }
}

// ---------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Smartsock,
    Aiomsg,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Smartsock => "smartsock",
            Self::Aiomsg => "aiomsg",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Smartsock => Self::Aiomsg,
            Self::Aiomsg => Self::Smartsock,
        }
    }
}

fn other_role(role: &str) -> &'static str {
    if role == "bind" { "connect" } else { "bind" }
}

/// The conformance-agent flags.
fn agent(role: &str, behavior: &str, port: u16, count: usize, linger: &str) -> Vec<String> {
    #[rustfmt::skip]
    let flags = strings(&[
        "--role", role, "--host", "127.0.0.1", "--port", &port.to_string(), "--behavior", behavior,
        "--count", &count.to_string(), "--prefix", "m", "--linger", linger,
    ]);
    flags
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `flags` with each `--flag value` pair of `extra` set: replaced if there, else added.
fn with(mut flags: Vec<String>, extra: &[&str]) -> Vec<String> {
    for pair in extra.chunks(2) {
        let (flag, value) = (pair[0], pair.get(1).copied().unwrap_or_default());
        match flags.iter().position(|f| f == flag) {
            Some(at) if at + 1 < flags.len() => flags[at + 1] = value.to_owned(),
            _ => flags.extend([flag.to_owned(), value.to_owned()]),
        }
    }
    flags
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: &T, expected: &T) -> Result {
    if got == expected { Ok(()) } else { Err(format!("{what}: got {got:?}, expected {expected:?}")) }
}

/// One source agent, one sink agent; the sink must get exactly what was sent.
fn pair(s: &Scene, source: Impl, source_role: &str, mode: &str, delivery: &str) -> Result {
    let port = free_port()?;
    let settings = ["--send-mode", mode, "--delivery", delivery];
    // An aiomsg source counts the ACKs still missing when its linger ends:
    // give a slow machine room for them.
    let linger = if source == Impl::Aiomsg && delivery == "at-least-once" { "2.0" } else { "1.0" };
    let source_flags = with(agent(source_role, "source", port, COUNT, linger), &settings);
    let sink_flags = with(agent(other_role(source_role), "sink", port, COUNT, "1.0"), &settings);
    // The binding side first, as the aiomsg conformance runner does; the
    // connect end would retry anyway.
    let (mut source_proc, mut sink) = if source_role == "bind" {
        let source_proc = s.agent(source, "source", source_flags)?;
        (source_proc, s.agent(source.other(), "sink", sink_flags)?)
    } else {
        let sink = s.agent(source.other(), "sink", sink_flags)?;
        (s.agent(source, "source", source_flags)?, sink)
    };
    let received = sink.lines(COUNT)?;
    let expected = numbered("m", 0..COUNT);
    if delivery == "at-most-once" {
        expect_eq("the sink's messages, in order", &received, &expected)?;
    } else {
        // At-least-once promises no order.
        let got: BTreeSet<_> = received.iter().collect();
        expect_eq("the sink's messages, in any order", &got, &expected.iter().collect())?;
    }
    sink.success()?;
    source_proc.success()?;
    // aiomsg resends what is not acknowledged within 5 s: nothing may be left.
    if source == Impl::Aiomsg
        && delivery == "at-least-once"
        && !source_proc.stderr_text().contains("unacked 0")
    {
        return Err("the aiomsg source still waited for ACKs: smartsock did not acknowledge in time".into());
    }
    Ok(())
}

/// Round-robin from smartsock over two aiomsg sinks: each gets every other message.
fn two_sinks(s: &Scene) -> Result {
    let port = free_port()?;
    let all = numbered("m", 0..COUNT);
    let addr = format!("127.0.0.1:{port}");
    let mut send_args = strings(&["send", "--bind", &addr, "--wait-peers", "2", "--mode", "roundrobin"]);
    send_args.extend(all.iter().cloned());
    let mut sender = s.smartsock("send", send_args)?;
    let mut a = s.agent(Impl::Aiomsg, "sink a", agent("connect", "sink", port, COUNT / 2, "1.0"))?;
    let mut b = s.agent(Impl::Aiomsg, "sink b", agent("connect", "sink", port, COUNT / 2, "1.0"))?;
    let (got_a, got_b) = (a.lines(COUNT / 2)?, b.lines(COUNT / 2)?);
    let in_order = |got: &[String]| got.windows(2).all(|w| index(&w[0]) < index(&w[1]));
    if !in_order(&got_a) || !in_order(&got_b) {
        return Err(format!("out of order: {got_a:?} / {got_b:?}"));
    }
    let union: BTreeSet<_> = got_a.iter().chain(&got_b).collect();
    expect_eq("both sinks together", &union, &all.iter().collect())?;
    a.success()?;
    b.success()?;
    sender.success()
}

fn index(message: &str) -> usize {
    message.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(usize::MAX)
}

/// smartsock sends to one aiomsg identity of two, and names aiomsg senders right.
fn rust_by_identity(s: &Scene) -> Result {
    let port = free_port()?;
    let mut p = s.agent(
        Impl::Aiomsg,
        "sink P",
        with(agent("connect", "sink", port, 5, "1.0"), &["--identity", PY_P]),
    )?;
    let q = s.agent(
        Impl::Aiomsg,
        "sink Q",
        with(agent("connect", "sink", port, 1, "1.0"), &["--identity", PY_Q]),
    )?;
    let addr = format!("127.0.0.1:{port}");
    #[rustfmt::skip]
    let mut sender = s.smartsock("send --to P", strings(&[
        "send", "--bind", &addr, "--wait-peers", "2", "--to", PY_P, "i0", "i1", "i2", "i3", "i4",
    ]))?;
    expect_eq("what P received", &p.lines(5)?, &numbered("i", 0..5))?;
    sender.success()?;
    p.success()?;
    expect_eq("what Q received", &q.lines_within(Duration::from_millis(300)), &Vec::new())?;
    drop(q);

    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut receiver =
        s.smartsock("recv --json", strings(&["recv", "--bind", &addr, "--count", "5", "--json"]))?;
    receiver.stderr_line(|line| line.contains("listening on"))?;
    let source_flags =
        with(agent("connect", "source", port, 5, "0.5"), &["--identity", PY_P, "--prefix", "j"]);
    let mut source = s.agent(Impl::Aiomsg, "source P", source_flags)?;
    let expected: Vec<String> = (0..5).map(|i| format!(r#"{{"from":"{PY_P}","payload":"j{i}"}}"#)).collect();
    expect_eq("smartsock recv --json", &receiver.lines(5)?, &expected)?;
    receiver.success()?;
    source.success()
}

/// aiomsg sends to one smartsock identity of two, and names smartsock senders right.
fn py_by_identity(s: &Scene) -> Result {
    let port = free_port()?;
    let sink =
        |identity, count| with(agent("connect", "sink", port, count, "1.0"), &["--identity", identity]);
    let mut sink_s = s.agent(Impl::Smartsock, "sink S", sink(RS_S, 5))?;
    let sink_t = s.agent(Impl::Smartsock, "sink T", sink(RS_T, 1))?;
    let source_flags = with(agent("bind", "source", port, 5, "1.0"), &["--to", RS_S, "--prefix", "i"]);
    let mut source = s.agent(Impl::Aiomsg, "source --to S", source_flags)?;
    expect_eq("what S received", &sink_s.lines(5)?, &numbered("i", 0..5))?;
    sink_s.success()?;
    source.success()?;
    expect_eq("what T received", &sink_t.lines_within(Duration::from_millis(300)), &Vec::new())?;
    drop(sink_t);

    let port = free_port()?;
    let sink_flags = with(agent("bind", "sink", port, 5, "1.0"), &["--show-from", "true"]);
    let mut sink = s.agent(Impl::Aiomsg, "sink --show-from", sink_flags)?;
    let source_flags =
        with(agent("connect", "source", port, 5, "0.5"), &["--identity", RS_S, "--prefix", "j"]);
    let mut source = s.agent(Impl::Smartsock, "source S", source_flags)?;
    let expected: Vec<String> =
        (0..5).map(|i| format!(r#"{{"from": "{RS_S}", "payload": "j{i}"}}"#)).collect();
    expect_eq("aiomsg recv_identity", &sink.lines(5)?, &expected)?;
    sink.success()?;
    source.success()
}

/// A smartsock source sends while no peer exists; the aiomsg sink comes later.
fn buffered(s: &Scene, source_role: &str) -> Result {
    let port = free_port()?;
    let mut source = s.agent(Impl::Smartsock, "source", agent(source_role, "source", port, COUNT, "3.0"))?;
    if source_role == "bind" {
        source.stderr_line(|line| line.contains("bound"))?;
    }
    // The sends return at once, into the no-peer buffer: let them be done.
    thread::sleep(Duration::from_millis(500));
    let mut sink =
        s.agent(Impl::Aiomsg, "sink", agent(other_role(source_role), "sink", port, COUNT, "1.0"))?;
    expect_eq("the sink's messages, in order", &sink.lines(COUNT)?, &numbered("m", 0..COUNT))?;
    sink.success()?;
    source.success()
}

/// A hand-written peer writes HELLO and its first DATA in one write.
fn hello_data(s: &Scene, smartsock_role: &str) -> Result {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let raw_args =
        strings(&["hello-data", "--role", other_role(smartsock_role), "--port", &port.to_string()]);
    let (mut receiver, mut raw) = if smartsock_role == "bind" {
        let mut receiver = s.smartsock("recv", strings(&["recv", "--bind", &addr, "--count", "1"]))?;
        receiver.stderr_line(|line| line.contains("listening on"))?;
        (receiver, s.python("raw peer", "raw_peer.py", raw_args)?)
    } else {
        let raw = s.python("raw peer", "raw_peer.py", raw_args)?;
        (s.smartsock("recv", strings(&["recv", "--connect", &addr, "--count", "1"]))?, raw)
    };
    expect_eq("what smartsock received", &receiver.lines(1)?, &strings(&["together"]))?;
    receiver.success()?;
    raw.success()
}

/// The aiomsg bind end is killed and started again on the same port.
fn py_restart(s: &Scene) -> Result {
    let port = free_port()?;
    let mut first = s.agent(Impl::Aiomsg, "sink 1", agent("bind", "sink", port, 1000, "1.0"))?;
    let addr = format!("127.0.0.1:{port}");
    let mut sender = s.smartsock("send (stdin)", strings(&["send", "--connect", &addr, "--verbose"]))?;
    sender.stderr_line(|line| line.contains(" connected ("))?;
    sender.write_lines(&numbered("a", 0..5))?;
    expect_eq("before the restart", &first.lines(5)?, &numbered("a", 0..5))?;
    first.kill();
    let mut second = s.agent(Impl::Aiomsg, "sink 2", agent("bind", "sink", port, 5, "1.0"))?;
    sender.stderr_line(|line| line.contains(" connected ("))?;
    sender.write_lines(&numbered("b", 0..5))?;
    expect_eq("after the restart", &second.lines(5)?, &numbered("b", 0..5))?;
    second.success()?;
    sender.success()
}

/// The smartsock bind end is killed and started again on the same port.
fn rust_restart(s: &Scene) -> Result {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let send = |prefix| {
        let mut args = strings(&["send", "--bind", &addr, "--wait-peers", "1"]);
        args.extend(numbered(prefix, 0..5));
        args
    };
    let mut first = s.smartsock("send 1", send("a"))?;
    let mut sink = s.agent(Impl::Aiomsg, "sink", agent("connect", "sink", port, 10, "1.0"))?;
    expect_eq("before the restart", &sink.lines(5)?, &numbered("a", 0..5))?;
    first.kill();
    let mut second = s.smartsock("send 2", send("b"))?;
    expect_eq("after the restart", &sink.lines(5)?, &numbered("b", 0..5))?;
    sink.success()?;
    second.success()
}

/// Nothing but heartbeats crosses the link for 20 s; it must stay up.
fn idle_link(s: &Scene, smartsock_role: &str) -> Result {
    let port = free_port()?;
    let echo_flags = agent(smartsock_role, "echo", port, 1, "1.0");
    let idle_role = other_role(smartsock_role);
    let idle_flags = strings(&["--role", idle_role, "--port", &port.to_string(), "--seconds", IDLE_SECS]);
    let (mut echo, mut idle) = if smartsock_role == "bind" {
        let echo = s.agent(Impl::Smartsock, "echo", echo_flags)?;
        (echo, s.python("idle", "idle.py", idle_flags)?)
    } else {
        let idle = s.python("idle", "idle.py", idle_flags)?;
        (s.agent(Impl::Smartsock, "echo", echo_flags)?, idle)
    };
    idle.success()?;
    echo.success()
}

/// `smartsock send --at-least-once` exits 0 only if every message was
/// acknowledged within its linger: aiomsg's ACKs must reach it.
fn acked_by_aiomsg(s: &Scene) -> Result {
    let port = free_port()?;
    let mut sink = s.agent(Impl::Aiomsg, "sink", agent("bind", "sink", port, COUNT, "1.0"))?;
    let addr = format!("127.0.0.1:{port}");
    let mut args = strings(&["send", "--connect", &addr, "--at-least-once", "--linger", "3"]);
    args.extend(numbered("m", 0..COUNT));
    let mut sender = s.smartsock("send --at-least-once", args)?;
    let got: BTreeSet<_> = sink.lines(COUNT)?.into_iter().collect();
    expect_eq("the sink's messages, in any order", &got, &numbered("m", 0..COUNT).into_iter().collect())?;
    sender.success()?;
    sink.success()
}

/// The agents' TLS flags: the bind end is the server, the connect end
/// trusts the CA.
fn tls_flags(s: &Scene, role: &str) -> Vec<String> {
    let cert = |file: &str| s.tools.certs.join(file).display().to_string();
    if role == "bind" {
        strings(&["--tls", "true", "--tls-cert", &cert("server.pem"), "--tls-key", &cert("server.key")])
    } else {
        strings(&["--tls", "true", "--tls-ca", &cert("ca.pem")])
    }
}

/// A TLS source (bind end, TLS server) of one implementation and a sink
/// (connect end, TLS client) of the other.
fn tls_pair(s: &Scene, bind: Impl) -> Result {
    let port = free_port()?;
    let source_flags = [agent("bind", "source", port, COUNT, "1.0"), tls_flags(s, "bind")].concat();
    let sink_flags = [agent("connect", "sink", port, COUNT, "1.0"), tls_flags(s, "connect")].concat();
    let mut source = s.agent(bind, "TLS source", source_flags)?;
    let mut sink = s.agent(bind.other(), "TLS sink", sink_flags)?;
    expect_eq("the sink's messages, in order", &sink.lines(COUNT)?, &numbered("m", 0..COUNT))?;
    sink.success()?;
    source.success()
}

/// A Python `websockets` client speaks the protocol in binary messages to a
/// smartsock echo on its ordinary (TCP or TLS) port.
fn ws_client(s: &Scene, tls: bool) -> Result {
    let port = free_port()?;
    let mut flags = agent("bind", "echo", port, COUNT, "1.0");
    if tls {
        flags.extend(tls_flags(s, "bind"));
    }
    let mut echo = s.agent(Impl::Smartsock, "echo", flags)?;
    echo.stderr_line(|line| line.contains(" bound "))?;
    let mut args = strings(&["--port", &port.to_string(), "--count", &COUNT.to_string(), "--prefix", "w"]);
    if tls {
        args.extend(strings(&["--ca", &s.tools.certs.join("ca.pem").display().to_string()]));
    }
    let mut client = s.python("ws peer", "ws_peer.py", args)?;
    expect_eq("what came back", &client.lines(COUNT)?, &numbered("w", 0..COUNT))?;
    client.success()?;
    echo.success()
}

/// smartsock's `ws://` / `wss://` connect end against an aiomsg bind end,
/// which serves WebSocket on its port.
fn ws_to_aiomsg(s: &Scene, tls: bool) -> Result {
    let port = free_port()?;
    let mut flags = agent("bind", "sink", port, COUNT, "1.0");
    if tls {
        flags.extend(tls_flags(s, "bind"));
    }
    let mut sink = s.agent(Impl::Aiomsg, "sink", flags)?;
    let scheme = if tls { "wss" } else { "ws" };
    let mut args = strings(&["send", "--connect", &format!("{scheme}://127.0.0.1:{port}/")]);
    if tls {
        args.extend(strings(&["--tls-ca", &s.tools.certs.join("ca.pem").display().to_string()]));
    }
    args.extend(numbered("m", 0..COUNT));
    let mut sender = s.smartsock("send", args)?;
    expect_eq("the sink's messages, in order", &sink.lines(COUNT)?, &numbered("m", 0..COUNT))?;
    sender.success()?;
    sink.success()
}

/// A raw DATA_REQ must be acknowledged within 1 s and delivered once.
fn ack_in_time(s: &Scene) -> Result {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut receiver = s.smartsock("recv", strings(&["recv", "--bind", &addr, "--count", "2"]))?;
    receiver.stderr_line(|line| line.contains("listening on"))?;
    let raw_args = strings(&["ack", "--port", &port.to_string(), "--payload", "once"]);
    let mut raw = s.python("raw peer", "raw_peer.py", raw_args)?;
    raw.success()?;
    expect_eq("what smartsock received", &receiver.lines(2)?, &strings(&["once", "done"]))?;
    receiver.success()
}

// ---------------------------------------------------------------------------
// Running scenarios

/// What the scenarios run.
#[derive(Clone)]
struct Tools {
    smartsock: PathBuf,
    python: PathBuf,
    scripts: PathBuf,
    /// `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    certs: PathBuf,
}

#[derive(Default)]
struct Tally {
    outcomes: Mutex<Vec<bool>>,
}

impl Tally {
    fn counts(&self) -> (usize, usize) {
        let outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let passed = outcomes.iter().filter(|ok| **ok).count();
        (passed, outcomes.len() - passed)
    }
}

/// Runs one scenario: times it, prints its line, and on failure the stderr
/// of every process it started. Its processes are killed when `body` returns.
fn scenario(
    tools: &Tools,
    tally: &Tally,
    name: &str,
    deadline: Duration,
    body: impl FnOnce(&Scene) -> Result,
) {
    let scene =
        Scene { tools: tools.clone(), deadline: Instant::now() + deadline, logs: Mutex::new(Vec::new()) };
    let started = Instant::now();
    let outcome = body(&scene);
    let secs = started.elapsed().as_secs_f64();
    let mut report = String::new();
    match &outcome {
        Ok(()) => report.push_str(&format!("PASS  {secs:6.1}s  {name}")),
        Err(why) => {
            report.push_str(&format!("FAIL  {secs:6.1}s  {name}\n        {why}"));
            for (label, log) in scene.logs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let log = log.lock().unwrap_or_else(|e| e.into_inner());
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                report.push_str(&format!("\n        --- {label} stderr ---"));
                for line in tail.into_iter().rev() {
                    report.push_str(&format!("\n        {line}"));
                }
            }
        }
    }
    println!("{report}");
    tally.outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(outcome.is_ok());
}

/// One scenario's context: its deadline and the processes it started.
struct Scene {
    tools: Tools,
    deadline: Instant,
    logs: Mutex<Vec<(String, Arc<Mutex<String>>)>>,
}

impl Scene {
    /// A conformance agent: `smartsock agent ...` or `python agent.py ...`.
    fn agent(&self, side: Impl, label: &str, flags: Vec<String>) -> Result<Proc> {
        match side {
            Impl::Smartsock => self.smartsock(label, [vec!["agent".to_owned()], flags].concat()),
            Impl::Aiomsg => self.python(label, "agent.py", flags),
        }
    }

    fn smartsock(&self, label: &str, args: Vec<String>) -> Result<Proc> {
        let mut command = Command::new(&self.tools.smartsock);
        command.args(args);
        self.start(format!("smartsock {label}"), command)
    }

    fn python(&self, label: &str, script: &str, args: Vec<String>) -> Result<Proc> {
        let mut command = Command::new(&self.tools.python);
        command.arg(self.tools.scripts.join(script)).args(args).env("PYTHONUNBUFFERED", "1");
        self.start(format!("aiomsg {label}"), command)
    }

    fn start(&self, label: String, mut command: Command) -> Result<Proc> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).push((label.clone(), log.clone()));
        let stdout = lines_of(child.stdout.take().expect("piped"), None);
        let stderr = lines_of(child.stderr.take().expect("piped"), Some(log.clone()));
        Ok(Proc { label, stdin: child.stdin.take(), child, stdout, stderr, log, deadline: self.deadline })
    }
}

/// Reads a pipe line by line on a thread; stderr is also kept whole in `log`.
fn lines_of(pipe: impl Read + Send + 'static, log: Option<Arc<Mutex<String>>>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
            // The receiver may be gone: keep draining so the child never blocks.
            let _ = tx.send(line);
        }
    });
    rx
}

/// A child process, killed and reaped on drop.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    log: Arc<Mutex<String>>,
    deadline: Instant,
}

impl Proc {
    /// The next `n` stdout lines, by the deadline.
    fn lines(&mut self, n: usize) -> Result<Vec<String>> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match self.stdout.recv_timeout(self.deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => got.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: {} of {n} lines in time: {got:?}", self.label, got.len()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited after {} of {n} lines: {got:?}", self.label, got.len()));
                }
            }
        }
        Ok(got)
    }

    /// Whatever stdout lines come within `wait`.
    fn lines_within(&self, wait: Duration) -> Vec<String> {
        let until = Instant::now() + wait;
        let mut got = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(until.saturating_duration_since(Instant::now())) {
            got.push(line);
        }
        got
    }

    /// Waits, by the deadline, for a stderr line that matches.
    fn stderr_line(&mut self, matches: impl Fn(&str) -> bool) -> Result {
        loop {
            match self.stderr.recv_timeout(self.deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if matches(&line) => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(format!("{}: the expected line never came on stderr", self.label)),
            }
        }
    }

    fn stderr_text(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write_lines(&mut self, lines: &[String]) -> Result {
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("{}: stdin is closed", self.label))?;
        for line in lines {
            writeln!(stdin, "{line}").map_err(|e| format!("{}: cannot write stdin: {e}", self.label))?;
        }
        stdin.flush().map_err(|e| format!("{}: cannot write stdin: {e}", self.label))
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits, by the deadline, for the process to exit 0.
    fn success(&mut self) -> Result {
        self.close_stdin();
        let status = self.wait()?;
        if status.success() { Ok(()) } else { Err(format!("{} exited with {status}", self.label)) }
    }

    fn wait(&mut self) -> Result<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < self.deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => return Err(format!("{} did not exit in time", self.label)),
                Err(e) => return Err(format!("{}: cannot wait: {e}", self.label)),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Setup

/// The target directory: `CARGO_TARGET_DIR` if set, else `target/` in the workspace.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { env::current_dir().unwrap_or_else(|_| root()).join(dir) }
        }
        None => root().join("target"),
    }
}

/// The venv's python, with [`PACKAGES`] installed from PyPI (once).
fn python_with_packages() -> Result<PathBuf> {
    let venv = target_dir().join("interop-venv");
    let python =
        if cfg!(windows) { venv.join("Scripts").join("python.exe") } else { venv.join("bin").join("python") };
    if !python.exists() {
        run_in(Command::new("python3").args(["-m", "venv"]).arg(&venv), &root())?;
    }
    let missing: Vec<String> = PACKAGES
        .iter()
        .filter(|(name, version)| installed(&python, name).as_deref() != Some(*version))
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        println!("\n==> aiomsg {AIOMSG_VERSION}, websockets and trustme already in {}", venv.display());
    } else {
        run_in(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(&missing),
            &root(),
        )?;
    }
    Ok(python)
}

fn installed(python: &Path, package: &str) -> Option<String> {
    let output = Command::new(python)
        .args(["-c", &format!("import importlib.metadata as m; print(m.version({package:?}))")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A port that was free a moment ago (bound to port 0, then released).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("cannot find a free port: {e}"))
}
