//! The built `smartsock` binary, run as a user would, over loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smartsock");
const LIMIT: Duration = Duration::from_secs(20);

/// A child process killed on drop, so a failing test leaves nothing behind.
struct Running(Option<Child>);

impl Running {
    fn start(args: &[&str]) -> Self {
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the smartsock binary starts");
        Self(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }

    /// Reads stderr up to the "listening on ADDR" line and returns ADDR.
    fn bound_addr(&mut self) -> String {
        let stderr = self.child().stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let found = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix("smartsock: listening on ").map(str::to_owned));
            let _ = tx.send(found);
            // Keeps reading so that the child never blocks on a full pipe.
            lines.for_each(drop);
        });
        rx.recv_timeout(LIMIT).expect("bound in time").expect("a listening line on stderr")
    }

    /// Waits for the exit (killing it past the limit) and returns the output.
    fn finish(mut self) -> Output {
        let child = self.0.take().expect("still running");
        let id = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(output) => output.expect("waited"),
            Err(_) => {
                let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
                panic!("smartsock did not exit within {LIMIT:?}");
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(args: &[&str]) -> Output {
    let mut running = Running::start(args);
    drop(running.child().stdin.take());
    running.finish()
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn send_then_recv_round_trip() {
    let mut receiver = Running::start(&["recv", "--bind", "127.0.0.1:0", "--count", "3"]);
    let addr = receiver.bound_addr();
    let sent = run(&["send", "--connect", &addr, "hello", "smart", "world"]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    let received = receiver.finish();
    assert!(received.status.success());
    assert_eq!(stdout_lines(&received), ["hello", "smart", "world"]);
}

#[test]
fn send_count_repeats_the_messages_quietly_when_stderr_is_not_a_terminal() {
    let mut receiver = Running::start(&["recv", "--bind", "127.0.0.1:0", "--count", "1000"]);
    let addr = receiver.bound_addr();
    let sent = run(&["send", "--connect", &addr, "--count", "500", "tick", "tock"]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    // stderr is a pipe here: no progress bar, nothing at all.
    assert_eq!(String::from_utf8_lossy(&sent.stderr), "");
    let received = receiver.finish();
    let lines = stdout_lines(&received);
    assert_eq!(lines.len(), 1000);
    assert!(lines.chunks(2).all(|pair| pair == ["tick", "tock"]), "in order, repeated");
}

#[test]
fn send_reads_lines_from_stdin() {
    let mut receiver = Running::start(&["recv", "--bind", "127.0.0.1:0", "--count", "2", "--hex"]);
    let addr = receiver.bound_addr();
    let mut sender = Running::start(&["send", "--connect", &addr]);
    let mut stdin = sender.child().stdin.take().unwrap();
    stdin.write_all(b"one\r\n\x00\xff\n").unwrap();
    drop(stdin);
    assert!(sender.finish().status.success());
    let received = receiver.finish();
    assert_eq!(stdout_lines(&received), ["6f6e65", "00ff"]);
}

#[test]
fn recv_json_names_the_sender() {
    let identity = "00112233445566778899aabbccddeeff";
    let mut receiver = Running::start(&["recv", "--bind", "127.0.0.1:0", "--count", "1", "--json"]);
    let addr = receiver.bound_addr();
    let sent = run(&["send", "--connect", &addr, "--identity", identity, "--at-least-once", "say \"hi\""]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    let received = receiver.finish();
    let lines = stdout_lines(&received);
    assert_eq!(lines.len(), 1);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(line["from"], identity);
    assert_eq!(line["payload"], "say \"hi\"");
}

#[test]
fn bad_addresses_and_flags_fail_with_one_line() {
    for args in [
        &["send", "--connect", "nonsense", "x"][..],
        &["recv", "--bind", "127.0.0.1:99999"],
        &["recv"],
        &["send", "--connect", "127.0.0.1:1", "--mode", "sideways", "x"],
        &["send", "--connect", "127.0.0.1:1", "--mode", "publish", "--at-least-once", "x"],
        &["agent", "--tls"],
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("smartsock: "), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    let output = run(&["send", "--connect", "nonsense", "x"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("host:port"));
}

#[test]
fn a_port_in_use_is_a_runtime_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["recv", "--bind", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot bind"));
}

#[test]
fn agent_source_to_agent_sink() {
    let port = free_port().to_string();
    let common = ["--host", "127.0.0.1", "--port", &port, "--count", "5", "--prefix", "x"];
    let sink = Running::start(&[&["agent", "--role", "bind", "--behavior", "sink"][..], &common].concat());
    let source = Running::start(
        &[&["agent", "--role", "connect", "--behavior", "source", "--linger", "0.5"][..], &common].concat(),
    );
    let received = sink.finish();
    assert!(received.status.success(), "{}", String::from_utf8_lossy(&received.stderr));
    assert_eq!(stdout_lines(&received), ["x0", "x1", "x2", "x3", "x4"]);
    let sent = source.finish();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(sent.stdout.is_empty(), "a source prints nothing on stdout");
}

/// Speaks the wire protocol by hand: HELLO and a DATA in one write, then
/// reads frames until the echo comes back.
#[test]
fn agent_echo_answers_the_sender() {
    let port = free_port().to_string();
    let _echo =
        Running::start(&["agent", "--role", "bind", "--port", &port, "--behavior", "echo", "--count", "1"]);
    let deadline = Instant::now() + LIMIT;
    let mut stream = loop {
        match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("the echo agent never listened: {error}"),
        }
    };
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut hello_and_data = vec![0, 0, 0, 18, 1, 1];
    hello_and_data.extend_from_slice(&[7; 16]);
    hello_and_data.extend_from_slice(&[0, 0, 0, 5, 3, b'p', b'i', b'n', b'g']);
    stream.write_all(&hello_and_data).unwrap();
    let mut frames = Vec::new();
    while !frames.iter().any(|frame: &Vec<u8>| frame[0] == 3) {
        let mut len = [0; 4];
        stream.read_exact(&mut len).unwrap();
        let mut frame = vec![0; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut frame).unwrap();
        frames.push(frame);
    }
    assert_eq!(frames[0][..2], [1, 1], "a HELLO first");
    assert_eq!(frames.last().unwrap(), b"\x03ping");
}

#[test]
fn agent_refuses_tls_for_now() {
    let output = run(&["agent", "--tls", "true", "--behavior", "sink"]);
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), "smartsock: TLS is not supported yet");
}

#[cfg(unix)]
#[test]
fn send_and_recv_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("unix://{}", dir.path().join("cli.sock").display());
    let mut receiver = Running::start(&["recv", "--bind", &addr, "--count", "2"]);
    assert_eq!(receiver.bound_addr(), addr);
    let sent = run(&["send", "--connect", &addr, "over", "unix"]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    let received = receiver.finish();
    assert!(received.status.success());
    assert_eq!(stdout_lines(&received), ["over", "unix"]);
}

#[test]
fn schemes_without_a_transport_are_a_usage_error() {
    for addr in ["tls://127.0.0.1:5555", "ws://127.0.0.1:5555/", "ipc:///tmp/x"] {
        let output = run(&["recv", "--bind", addr]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{addr}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{addr}: {stderr}");
    }
}

#[test]
fn recv_stats_reports_rates_each_second_and_a_summary() {
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let receiver = Running::start(&["recv", "--bind", &addr, "--count", "3", "--stats"]);
    let first = run(&["send", "--connect", &addr, "one", "two"]);
    assert!(first.status.success(), "{first:?}");
    // Long enough for one report in between.
    thread::sleep(Duration::from_millis(1500));
    let second = run(&["send", "--connect", &addr, "three"]);
    assert!(second.status.success(), "{second:?}");
    let output = receiver.finish();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), ["one", "two", "three"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rates: Vec<_> = stderr
        .lines()
        .filter(|line| line.contains(" msg/s, ") && (line.ends_with(" peers") || line.ends_with(" peer")))
        .collect();
    assert!(!rates.is_empty(), "a line a second: {stderr}");
    assert!(rates[0].starts_with("smartsock: stats: "), "{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with("smartsock: stats: received 3 messages, 0.00 MB in "), "{stderr}");
}
