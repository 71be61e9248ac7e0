#!/usr/bin/env python3
"""Issue 12's nine hostile-peer attacks against the `smartsock` CLI on loopback.

Each scenario is short (seconds) and bounded: every process it starts is
killed at its time limit, and a limit reached is reported as such. Python
speaks the aiomsg v1 wire protocol by hand (PROTOCOL.md): a frame is a
4-byte big-endian length, then a type byte and its body.

    python3 scripts/hostile.py --bin target/release/smartsock [--only WORD] [--out FILE]

Prints one Markdown row per scenario: what was measured (time, messages
delivered, exit codes, peak RSS of the process under attack). Driven by
`cargo xtask hostile`, which builds the CLI first. Linux only (/proc).
"""

import argparse
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

HELLO, HEARTBEAT, DATA, DATA_REQ, ACK = 1, 2, 3, 4, 5
MIB = 1 << 20


# ---------------------------------------------------------------- the wire


def frame(kind, body=b""):
    return struct.pack(">IB", len(body) + 1, kind) + body


def hello(ident):
    return frame(HELLO, bytes([1]) + ident)


HEARTBEAT_FRAME = frame(HEARTBEAT)


def read_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def read_frame(sock):
    """(type, body), or None at the end of the stream."""
    head = read_exact(sock, 5)
    if head is None:
        return None
    length, kind = struct.unpack(">IB", head)
    body = read_exact(sock, length - 1) if length > 1 else b""
    return None if body is None else (kind, body)


def ident(n):
    return n.to_bytes(16, "big")


def dial(addr, ident_bytes, source=None, answer=True, timeout=5.0):
    """Connects to a bind end, says HELLO; returns the socket once the bind
    end answered (None if it closed or stayed silent instead)."""
    host, port = addr.rsplit(":", 1)
    sock = socket.socket()
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect((host, int(port)))
    sock.sendall(hello(ident_bytes))
    if not answer:
        return sock
    try:
        got = read_frame(sock)
    except OSError:
        got = None
    if got is None or got[0] != HELLO:
        sock.close()
        return None
    return sock


class Listener:
    """A bind end in Python: one connection, HELLO answered as `ident`."""

    def __init__(self, ident_bytes):
        self.ident = ident_bytes
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.addr = "127.0.0.1:%d" % self.server.getsockname()[1]

    def accept(self, timeout=10.0):
        self.server.settimeout(timeout)
        sock, _ = self.server.accept()
        sock.settimeout(timeout)
        if read_frame(sock) is None:
            return None
        sock.sendall(hello(self.ident))
        return sock


# ------------------------------------------------------------ the processes


def rss_mib(pid):
    """(VmRSS, VmHWM) of `pid` in MiB, or (None, None) once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)
    except (OSError, KeyError, ValueError):
        return (None, None)


class Cli:
    """A `smartsock` process; stdout and stderr read by threads into lists
    (unless stdout is left unread, to play a stalled application)."""

    def __init__(self, binary, args, stdin=subprocess.DEVNULL, read_stdout=True, env=None):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary] + args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, **(env or {})),
        )
        self.out, self.err = [], []
        self.peak = 0.0
        self.listening = threading.Event()
        self.addr = None
        if read_stdout:
            threading.Thread(target=self._lines, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._lines, args=(self.proc.stderr, self.err), daemon=True).start()

    def _lines(self, stream, into):
        for line in stream:
            text = line.decode(errors="replace").rstrip("\n")
            into.append(text)
            if "listening on " in text and self.addr is None:
                self.addr = text.split("listening on ", 1)[1].strip()
                self.listening.set()

    def bound(self):
        if not self.listening.wait(10):
            raise RuntimeError("no listening line: %s" % self.err)
        return self.addr

    def sample_rss(self):
        _, hwm = rss_mib(self.proc.pid)
        if hwm:
            self.peak = max(self.peak, hwm)
        return self.peak

    def wait(self, limit):
        """(exit code or 'killed', seconds)."""
        try:
            code = self.proc.wait(timeout=max(0.0, limit))
        except subprocess.TimeoutExpired:
            self.sample_rss()
            self.proc.kill()
            self.proc.wait()
            code = "killed at %.0f s" % (time.monotonic() - self.started)
        return code, time.monotonic() - self.started

    def stop(self):
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def wait_until(cond, limit, step=0.01):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def feed(proc, lines):
    """Writes `lines` to `proc`'s stdin in a thread (the CLI reads as it sends)."""

    def run():
        try:
            for line in lines:
                proc.stdin.write(line)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def heartbeats(socks, stop, every=1.0):
    def run():
        while not stop.wait(every):
            for sock in list(socks):
                try:
                    sock.sendall(HEARTBEAT_FRAME)
                except OSError:
                    pass

    threading.Thread(target=run, daemon=True).start()


def shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def closing(socks):
    for sock in socks:
        try:
            sock.close()
        except OSError:
            pass


# ------------------------------------------------------------- the scenarios


def forged_acks(bin_):
    """1. An at-least-once sender bound to two peers: one never acknowledges
    (and leaves after 2 s), one acknowledges and also ACKs predicted ids."""
    silent, forger = Listener(ident(0x51), ), Listener(ident(0xF0))
    count = 200
    cli = Cli(bin_, ["send", "--at-least-once", "--connect", silent.addr, "--connect", forger.addr,
                     "--wait-peers", "2", "--linger", "6"], stdin=subprocess.PIPE)
    got = {"silent": set(), "forger": set()}

    def silent_peer():
        sock = silent.accept()
        sock.settimeout(None)
        threading.Timer(2.0, shut, args=(sock,)).start()
        while True:
            try:
                item = read_frame(sock)
            except OSError:
                break
            if item is None:
                break
            if item[0] == DATA_REQ:
                got["silent"].add(item[1][16:])
        sock.close()

    def forging_peer():
        sock = forger.accept()
        while True:
            try:
                item = read_frame(sock)
            except OSError:
                break
            if item is None:
                break
            if item[0] == DATA_REQ:
                msg_id = item[1][:16]
                got["forger"].add(item[1][16:])
                forged = [ACK_FRAME(msg_id)]
                # The ids that follow, if ids are a salt and a counter.
                salt, counter = msg_id[:8], int.from_bytes(msg_id[8:], "big")
                forged.append(ACK_FRAME(salt + (counter + 1).to_bytes(8, "big")))
                try:
                    sock.sendall(b"".join(forged))
                except OSError:
                    break

    threads = [threading.Thread(target=f, daemon=True) for f in (silent_peer, forging_peer)]
    for t in threads:
        t.start()
    feed(cli.proc, [b"m%05d\n" % i for i in range(count)])
    code, secs = cli.wait(20)
    for t in threads:
        t.join(2)
    acked = len(got["forger"])
    return row("1 forged ACKs", secs, "%d of %d reached the peer that acknowledges" % (acked, count),
               "send %s" % code)


def ACK_FRAME(msg_id):
    return frame(ACK, msg_id)


def ack_flood(bin_):
    """2. 20,000 at-least-once messages to two honest peers while a third
    floods random ACKs."""
    count = 20000
    honest = [Listener(ident(0xA1)), Listener(ident(0xA2))]
    flooder = Listener(ident(0xAF))
    cli = Cli(bin_, ["send", "--at-least-once", "--connect", honest[0].addr, "--connect", honest[1].addr,
                     "--connect", flooder.addr, "--wait-peers", "3", "--linger", "10"], stdin=subprocess.PIPE)
    seen = {"payloads": set(), "frames": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def honest_peer(listener):
        sock = listener.accept()
        buf = bytearray()
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            acks, at = [], 0
            while len(buf) >= at + 4:
                length = int.from_bytes(buf[at:at + 4], "big")
                if len(buf) < at + 4 + length:
                    break
                if buf[at + 4] == DATA_REQ:
                    body = bytes(buf[at + 5:at + 4 + length])
                    acks.append(ACK_FRAME(body[:16]))
                    with lock:
                        seen["frames"] += 1
                        seen["payloads"].add(body[16:])
                at += 4 + length
            del buf[:at]
            if acks:
                try:
                    sock.sendall(b"".join(acks))
                except OSError:
                    break

    def flooding_peer():
        sock = flooder.accept()
        # Floods once the sending has begun (its first DATA_REQ), never acknowledging.
        while True:
            item = read_frame(sock)
            if item is None or item[0] == DATA_REQ:
                break
        junk = b"".join(ACK_FRAME(random.randbytes(16)) for _ in range(20000))
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                sock.sendall(junk)
            except socket.timeout:
                continue
            except OSError:
                break

    threads = [threading.Thread(target=honest_peer, args=(h,), daemon=True) for h in honest]
    threads.append(threading.Thread(target=flooding_peer, daemon=True))
    for t in threads:
        t.start()
    feed(cli.proc, [b"m%06d\n" % i for i in range(count)])
    code, secs = cli.wait(30)
    stop.set()
    for t in threads:
        t.join(2)
    delivered = len(seen["payloads"])
    return row("2 ACK flood", secs, "%d of %d at the honest peers, %d duplicates"
               % (delivered, count, seen["frames"] - delivered), "send %s" % code)


def refused_identity(bin_):
    """3. `send --identity X` while a squatter holds X at the bind end."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0"])
    addr = recv.bound()
    squatter = dial(addr, ident(0x5151))
    stop = threading.Event()
    heartbeats([squatter], stop)
    send = Cli(bin_, ["send", "--connect", addr, "--identity", ident(0x5151).hex(), "--linger", "2",
                      "one", "two", "three"])
    code, secs = send.wait(15)
    time.sleep(0.2)
    stop.set()
    recv.stop()
    closing([squatter])
    return row("3 refused after HELLO", secs, "%d of 3 delivered" % len(recv.out), "send %s" % code)


def slow_loris(bin_, source=None):
    """4. 100 connections that never say anything, then a legitimate peer
    (from 127.0.0.1; the silent ones from `source`)."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0", "--count", "1"])
    addr = recv.bound()
    host, port = addr.rsplit(":", 1)
    silent = []
    for _ in range(100):
        sock = socket.socket()
        if source:
            sock.bind((source, 0))
        sock.connect((host, int(port)))
        silent.append(sock)
    started = time.monotonic()
    send = Cli(bin_, ["send", "--connect", addr, "--linger", "20", "hello"])
    arrived = wait_until(lambda: recv.out, 15)
    secs = time.monotonic() - started
    code, _ = send.wait(5)
    recv.stop()
    closing(silent)
    waited = "%.1f s until delivered" % secs if arrived else "not delivered in 15 s"
    name = "4%s slow loris (100 silent, %s)" % ("b" if source else "a", "from " + source if source else
                                                 "same address")
    return row(name, secs, waited, "send %s" % code)


def slow_loris_elsewhere(bin_):
    return slow_loris(bin_, "127.0.0.2")


def big_frames_to_slow_app(bin_):
    """5a. 1 MiB DATA frames to a receiver whose application is stalled
    (its stdout is never read): the receiver's peak RSS."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0"], read_stdout=False)
    addr = recv.bound()
    sock = dial(addr, ident(0xB16))
    payload = frame(DATA, b"x" * MIB)
    sock.settimeout(None)
    sent = [0]

    def push():
        try:
            while sent[0] < 1200:
                sock.sendall(payload)
                sent[0] += 1
        except OSError:
            pass

    started = time.monotonic()
    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    while pusher.is_alive() and time.monotonic() - started < 6:
        recv.sample_rss()
        time.sleep(0.05)
    sent = sent[0]
    time.sleep(0.5)
    peak = recv.sample_rss()
    recv.stop()
    closing([sock])
    pusher.join(2)
    return row("5a 1 MiB frames, stalled receiver", time.monotonic() - started,
               "%d MiB taken in before TCP pushed back" % sent, "recv peak RSS %.0f MiB" % peak)


def big_messages_to_stalled_peer(bin_):
    """5b. `send` of 300 messages of 1 MiB to a peer that never reads: the
    sender's peak RSS."""
    stalled = Listener(ident(0x5B))
    cli = Cli(bin_, ["send", "--connect", stalled.addr, "--linger", "1"], stdin=subprocess.PIPE)
    holder = {}
    threading.Thread(target=lambda: holder.setdefault("sock", stalled.accept()), daemon=True).start()
    line = b"y" * MIB + b"\n"
    feed(cli.proc, (line for _ in range(300)))
    end = time.monotonic() + 5
    while time.monotonic() < end and cli.proc.poll() is None:
        cli.sample_rss()
        time.sleep(0.05)
    peak = cli.sample_rss()
    code, secs = cli.wait(0)
    closing([holder.get("sock")] if holder.get("sock") else [])
    return row("5b 1 MiB messages, stalled peer", secs, "300 MiB offered", "send peak RSS %.0f MiB, %s"
               % (peak, code))


def read_buffers(bin_):
    """6. 10 connections each send one 16 MiB frame, then stay idle: the
    receiver's RSS 3 s later."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0"], read_stdout=True)
    addr = recv.bound()
    payload = frame(DATA, b"z" * (16 * MIB - 64))
    socks = []
    started = time.monotonic()
    for i in range(10):
        sock = dial(addr, ident(0x6000 + i), timeout=20)
        sock.sendall(payload)
        socks.append(sock)
    stop = threading.Event()
    heartbeats(socks, stop)
    wait_until(lambda: len(recv.out) >= 10, 15)
    time.sleep(3)
    rss, _ = rss_mib(recv.proc.pid)
    stop.set()
    recv.stop()
    closing(socks)
    return row("6 read buffers (10 x 16 MiB, then idle)", time.monotonic() - started,
               "%d of 10 delivered" % min(len(recv.out), 10), "recv RSS after 3 s idle %.0f MiB" % rss)


def slots(bin_):
    """7. One address opens 1,024 connections and keeps them with
    heartbeats; then a legitimate peer from another address."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0", "--count", "1"])
    addr = recv.bound()
    held, refused = [], 0
    started = time.monotonic()
    for i in range(1024):
        try:
            sock = dial(addr, ident(0x7000 + i), source="127.0.0.2", timeout=2)
        except OSError:
            sock = None
        if sock is None:
            refused += 1
        else:
            held.append(sock)
    stop = threading.Event()
    heartbeats(held, stop)
    rss, _ = rss_mib(recv.proc.pid)
    send = Cli(bin_, ["send", "--connect", addr, "--linger", "3", "hello"])
    code, _ = send.wait(10)
    arrived = wait_until(lambda: recv.out, 1)
    stop.set()
    recv.stop()
    closing(held)
    return row("7 peer slots (1,024 from one address)", time.monotonic() - started,
               "%d slots held, %d refused; legitimate hello %s" % (len(held), refused,
                                                                   "delivered" if arrived else "not delivered"),
               "send %s; recv RSS %.0f MiB" % (code, rss))


def legit_run(bin_, count, flooders):
    """(seconds until delivered, delivered, send's exit) for `count` messages from a
    legitimate sender while `flooders` connections flood HEARTBEATs."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0", "--count", str(count)])
    addr = recv.bound()
    stop = threading.Event()
    flood = HEARTBEAT_FRAME * 200000
    socks, flooding = [], threading.Barrier(flooders + 1)

    def flooder(n):
        sock = None
        try:
            sock = dial(addr, ident(0x8000 + n))
        except OSError:
            pass
        flooding.wait()
        if sock is None:
            return
        sock.settimeout(None)
        socks.append(sock)
        while not stop.is_set():
            try:
                sock.sendall(flood)
            except OSError:
                break

    threads = [threading.Thread(target=flooder, args=(n,), daemon=True) for n in range(flooders)]
    for t in threads:
        t.start()
    flooding.wait()
    send = Cli(bin_, ["send", "--connect", addr, "--linger", "20"], stdin=subprocess.PIPE)
    feed(send.proc, [b"m%06d\n" % i for i in range(count)])
    # Timed until the receiver has them all, not until the sender exits.
    wait_until(lambda: len(recv.out) >= count, 20)
    secs = time.monotonic() - send.started
    code, _ = send.wait(5)
    stop.set()
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    for t in threads:
        t.join(2)
    recv.stop()
    return secs, len(recv.out), code


def tiny_floods(bin_):
    """8. Four connections flood HEARTBEAT frames while a legitimate peer
    sends 200,000 messages; the same without the flood first."""
    count = 200000
    quiet, _, _ = legit_run(bin_, count, 0)
    secs, delivered, code = legit_run(bin_, count, 4)
    return row("8 tiny-frame flood (4 conns)", secs, "%d of %d delivered; %.1f s without the flood"
               % (delivered, count, quiet), "send %s" % code)


def log_storm(bin_):
    """9a. An identity storm for 3 s: WARN lines on the receiver's stderr."""
    recv = Cli(bin_, ["recv", "--bind", "127.0.0.1:0"], env={"RUST_LOG": "warn"})
    addr = recv.bound()
    held = ident(0x9999)
    holder = dial(addr, held)
    stop = threading.Event()
    heartbeats([holder], stop)
    refusals, started = 0, time.monotonic()
    while time.monotonic() - started < 3:
        try:
            sock = dial(addr, held, timeout=1, answer=False)
            # Refused: closed, with or without a HELLO first.
            while read_frame(sock) is not None:
                pass
            sock.close()
            refusals += 1
        except OSError:
            refusals += 1
    time.sleep(0.3)
    stop.set()
    recv.stop()
    closing([holder])
    warns = sum(1 for line in recv.err if "WARN" in line)
    return row("9a refusal storm (3 s)", time.monotonic() - started, "%d refusals" % refusals,
               "%d WARN lines" % warns)


def publish_report(bin_):
    """9b. `send --mode publish` of 3,000 messages of 4 KiB to three
    subscribers that never read and leave after 1 s: what the sender reports."""
    peers = [Listener(ident(0x9B0 + i)) for i in range(3)]
    args = ["send", "--mode", "publish", "--wait-peers", "3", "--linger", "2"]
    for peer in peers:
        args += ["--connect", peer.addr]
    cli = Cli(bin_, args, stdin=subprocess.PIPE)
    socks = []

    def subscriber(listener):
        sock = listener.accept()
        time.sleep(1)
        sock.close()

    threads = [threading.Thread(target=subscriber, args=(p,), daemon=True) for p in peers]
    for t in threads:
        t.start()
    feed(cli.proc, [b"p%04d" % i + b"." * 4096 + b"\n" for i in range(3000)])
    code, secs = cli.wait(20)
    closing(socks)
    said = [line for line in cli.err if "message(s)" in line]
    return row("9b publish report", secs, said[-1].replace("smartsock: ", "") if said else "(nothing reported)",
               "send %s" % code)


SCENARIOS = [forged_acks, ack_flood, refused_identity, slow_loris, slow_loris_elsewhere,
             big_frames_to_slow_app,
             big_messages_to_stalled_peer, read_buffers, slots, tiny_floods, log_storm, publish_report]


def row(name, secs, outcome, extra):
    return "| %s | %.1f | %s | %s |" % (name, secs, outcome, extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the smartsock binary")
    parser.add_argument("--only", help="only scenarios whose function name contains this")
    parser.add_argument("--out", help="also append the table to this file")
    parser.add_argument("--label", default="", help="a heading for the table")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    lines = ["### %s" % args.label if args.label else "", "",
             "| scenario | s | outcome | exit codes, memory, log |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario.__name__:
            continue
        try:
            line = scenario(args.bin)
        except Exception as error:  # one scenario's failure is reported, the rest run
            line = "| %s | - | scenario failed: %s | |" % (scenario.__name__, repr(error)[:120])
        print(line, flush=True)
        lines.append(line)
    if args.out:
        with open(args.out, "a") as out:
            out.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    sys.exit(main())
