"""A peer that speaks the aiomsg v1 wire protocol by hand, to check what a
library peer cannot show: byte boundaries and single frames.

  raw_peer.py hello-data --role connect|bind --port P --payload TEXT
      Writes its HELLO and a first DATA in one write (one sendall). As the
      connect end it writes them at once; as the bind end, after reading the
      peer's HELLO. The peer must deliver TEXT.

  raw_peer.py ack --port P --payload TEXT
      Connects, handshakes, sends one DATA_REQ and requires the ACK with the
      same msg_id within 1 s, then sends DATA "done" (so the receiver shows
      TEXT exactly once, then "done").

Exit status 0 on success; otherwise the reason is on stderr.
"""

import argparse
import socket
import struct
import sys
import time
import uuid

HELLO, HEARTBEAT, DATA, DATA_REQ, ACK = 1, 2, 3, 4, 5


def frame(envelope: bytes) -> bytes:
    return struct.pack(">I", len(envelope)) + envelope


def hello(identity: bytes) -> bytes:
    return frame(bytes((HELLO, 1)) + identity)


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            data += chunk
        return data

    (length,) = struct.unpack(">I", exactly(4))
    return exactly(length)


def read_hello(sock: socket.socket) -> bytes:
    envelope = read_frame(sock)
    if len(envelope) != 18 or envelope[0] != HELLO or envelope[1] != 1:
        raise ValueError(f"expected a HELLO, got {envelope!r}")
    return envelope[2:]


def connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def hello_data(args: argparse.Namespace) -> None:
    together = hello(uuid.uuid4().bytes) + frame(bytes((DATA,)) + args.payload.encode())
    if args.role == "connect":
        sock = connect(args.port)
        sock.sendall(together)
        read_hello(sock)
    else:
        with socket.create_server(("127.0.0.1", args.port)) as server:
            server.settimeout(10)
            sock, _ = server.accept()
        sock.settimeout(10)
        read_hello(sock)
        sock.sendall(together)
    # Stay a moment so that the peer reads everything before the close.
    time.sleep(0.5)
    sock.close()


def ack(args: argparse.Namespace) -> None:
    sock = connect(args.port)
    sock.sendall(hello(uuid.uuid4().bytes))
    read_hello(sock)
    msg_id = uuid.uuid4().bytes
    sent = time.monotonic()
    sock.sendall(frame(bytes((DATA_REQ,)) + msg_id + args.payload.encode()))
    sock.settimeout(1.0)
    while True:
        envelope = read_frame(sock)  # socket.timeout past 1 s: no ACK in time
        if envelope[0] == ACK:
            if envelope[1:] != msg_id:
                raise ValueError(f"ACK for {envelope[1:].hex()}, expected {msg_id.hex()}")
            break
        if envelope[0] != HEARTBEAT:
            raise ValueError(f"unexpected frame {envelope!r} while waiting for the ACK")
    print(f"ack after {time.monotonic() - sent:.3f}s", file=sys.stderr)
    sock.sendall(frame(bytes((DATA,)) + b"done"))
    time.sleep(0.5)
    sock.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a hand-written aiomsg v1 peer")
    parser.add_argument("check", choices=["hello-data", "ack"])
    parser.add_argument("--role", choices=["connect", "bind"], default="connect")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payload", default="together")
    parsed = parser.parse_args()
    try:
        {"hello-data": hello_data, "ack": ack}[parsed.check](parsed)
    except (OSError, ValueError) as error:
        sys.exit(f"raw_peer.py {parsed.check}: {type(error).__name__}: {error}")
