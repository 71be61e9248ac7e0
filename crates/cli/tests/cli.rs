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
fn agent_tls_needs_its_files() {
    let output = run(&["agent", "--tls", "true", "--behavior", "sink"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "smartsock: --tls true on the connect end needs --tls-ca"
    );
    let output = run(&["agent", "--role", "bind", "--tls", "true", "--behavior", "sink"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "smartsock: --tls true on the bind end needs --tls-cert and --tls-key"
    );
}

/// A CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, as PEM files in a temp dir.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in
            [("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]), ("client", vec![])]
        {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans).unwrap().signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

#[test]
fn send_and_recv_over_mutual_tls() {
    let certs = Certificates::new();
    let (cert, key, ca) = (certs.path("server.pem"), certs.path("server.key"), certs.path("ca.pem"));
    let mut receiver = Running::start(&[
        "recv",
        "--bind",
        "tls://127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--count",
        "2",
    ]);
    let addr = receiver.bound_addr();
    assert!(addr.starts_with("tls://127.0.0.1:"), "{addr}");
    let (client_cert, client_key) = (certs.path("client.pem"), certs.path("client.key"));
    let sent = run(&[
        "send",
        "--connect",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &client_cert,
        "--tls-key",
        &client_key,
        "over",
        "tls",
    ]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    let received = receiver.finish();
    assert!(received.status.success());
    assert_eq!(stdout_lines(&received), ["over", "tls"]);
}

#[test]
fn send_over_websocket_to_a_plain_bind() {
    let mut receiver = Running::start(&["recv", "--bind", "127.0.0.1:0", "--count", "1"]);
    let addr = receiver.bound_addr();
    let sent = run(&["send", "--connect", &format!("ws://{addr}/smartsock"), "over ws"]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    let received = receiver.finish();
    assert_eq!(stdout_lines(&received), ["over ws"]);
}

#[test]
fn agents_talk_over_tls() {
    let certs = Certificates::new();
    let port = free_port().to_string();
    let (cert, key, ca) = (certs.path("server.pem"), certs.path("server.key"), certs.path("ca.pem"));
    let sink = Running::start(&[
        "agent",
        "--role",
        "bind",
        "--port",
        &port,
        "--behavior",
        "sink",
        "--count",
        "3",
        "--tls",
        "true",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let source = run(&[
        "agent",
        "--role",
        "connect",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--behavior",
        "source",
        "--count",
        "3",
        "--prefix",
        "t",
        "--tls",
        "true",
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "localhost",
        "--linger",
        "0.5",
    ]);
    assert!(source.status.success(), "source failed: {}", String::from_utf8_lossy(&source.stderr));
    let received = sink.finish();
    assert!(received.status.success(), "{}", String::from_utf8_lossy(&received.stderr));
    assert_eq!(stdout_lines(&received), ["t0", "t1", "t2"]);
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
    // A tls:// bind with no certificate is refused at once, as is an unknown scheme.
    for addr in ["tls://127.0.0.1:5555", "ipc:///tmp/x"] {
        let output = run(&["recv", "--bind", addr]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{addr}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{addr}: {stderr}");
    }
}

/// A raw aiomsg peer: accepts one connection, answers the HELLO, then reads
/// at about 800 KB/s, sending a HEARTBEAT every second as aiomsg peers do,
/// until the sender's end; returns the DATA frames read. With `read: false`
/// it never reads, and holds the connection for `hold`.
fn raw_peer(listener: TcpListener, read: bool, hold: Duration) -> thread::JoinHandle<usize> {
    raw_peer_as([9; 16], listener, read, hold)
}

/// [`raw_peer`] with the identity `id`.
fn raw_peer_as(id: [u8; 16], listener: TcpListener, read: bool, hold: Duration) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut hello = [0u8; 22];
        stream.read_exact(&mut hello).expect("the sender's HELLO");
        let mut ours = vec![0, 0, 0, 18, 1, 1];
        ours.extend_from_slice(&id);
        stream.write_all(&ours).expect("our HELLO");
        if !read {
            thread::sleep(hold);
            return 0;
        }
        stream.set_read_timeout(Some(LIMIT)).expect("a read timeout");
        let (mut buffered, mut chunk, mut frames) = (Vec::new(), vec![0u8; 4096], 0);
        let mut last_heartbeat = Instant::now();
        loop {
            if last_heartbeat.elapsed() >= Duration::from_secs(1) {
                // Fails once the sender has reset the connection: the count tells.
                let _ = stream.write_all(&[0, 0, 0, 1, 2]);
                last_heartbeat = Instant::now();
            }
            let read = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            buffered.extend_from_slice(&chunk[..read]);
            let mut at = 0;
            while buffered.len() >= at + 4 {
                let len = u32::from_be_bytes(buffered[at..at + 4].try_into().expect("4 bytes")) as usize;
                if buffered.len() < at + 4 + len {
                    break;
                }
                frames += usize::from(buffered[at + 4] == 3);
                at += 4 + len;
            }
            buffered.drain(..at);
            thread::sleep(Duration::from_millis(5));
        }
        frames
    })
}

#[test]
fn send_delivers_everything_to_a_slow_peer_that_sends_heartbeats() {
    // As found: 3,000 messages of about 920 B; the sender exited 0 and the
    // peer got about 900, the rest destroyed by a reset at close.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let peer = raw_peer(listener, true, Duration::ZERO);
    let message = "x".repeat(920);
    let sent = run(&["send", "--connect", &addr, "--count", "3000", "--linger", "15", &message]);
    assert!(sent.status.success(), "send failed: {}", String::from_utf8_lossy(&sent.stderr));
    assert_eq!(peer.join().expect("the peer's thread"), 3000);
}

#[test]
fn send_fails_when_the_peer_does_not_confirm_within_the_linger() {
    // The peer never reads: the messages sit in its kernel buffer, and
    // nothing confirms they were read.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let peer = raw_peer(listener, false, Duration::from_secs(5));
    let sent = run(&["send", "--connect", &addr, "--count", "100", "--linger", "0.3", "hello"]);
    assert_eq!(sent.status.code(), Some(1), "{}", String::from_utf8_lossy(&sent.stderr));
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert!(stderr.contains("100 of 100 message(s) not confirmed"), "{stderr}");
    peer.join().expect("the peer's thread");
}

#[test]
fn send_timeout_ends_a_send_to_a_peer_that_stopped_reading() {
    // The peer never reads: once its kernel buffers and the socket's queue
    // are full, the next message cannot be queued. Without --send-timeout
    // the command would wait for as long as the peer holds the connection.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let peer = raw_peer(listener, false, Duration::from_secs(30));
    let message = "x".repeat(16 * 1024);
    let started = Instant::now();
    let sent = run(&[
        "send",
        "--connect",
        &addr,
        "--count",
        "100000",
        "--send-timeout",
        "1",
        "--linger",
        "0",
        &message,
    ]);
    assert_eq!(sent.status.code(), Some(1), "{}", String::from_utf8_lossy(&sent.stderr));
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert!(stderr.contains("could not be queued within --send-timeout (1 s)"), "{stderr}");
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
    drop(peer);
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

#[test]
fn a_publish_report_counts_messages_not_copies() {
    // Found: "3075 of 3000 message(s) not delivered" under publish, copies
    // counted as messages. Three subscribers that never read: 300 copies
    // unconfirmed, 100 messages.
    let peers: Vec<_> = (1..=3u8)
        .map(|i| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address").to_string();
            (addr, raw_peer_as([i; 16], listener, false, Duration::from_secs(5)))
        })
        .collect();
    let mut args =
        vec!["send", "--mode", "publish", "--wait-peers", "3", "--count", "100", "--linger", "0.3"];
    for (addr, _) in &peers {
        args.extend(["--connect", addr.as_str()]);
    }
    args.push("hello");
    let sent = run(&args);
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("100 of 100 message(s) not confirmed"), "{stderr}");
    for (_, peer) in peers {
        peer.join().expect("the peer's thread");
    }
}
