"""A WebSocket client (the `websockets` package from PyPI) that speaks the
aiomsg v1 protocol inside binary WebSocket messages, as a browser would,
against a bind end that serves raw TCP and WebSocket on one port.

  ws_peer.py --port P [--ca CA.pem] --count N --prefix STR

Connects to ws://127.0.0.1:P/ (wss:// with --ca), sends its HELLO, then
prefix+i as DATA for i in range(N), each frame in its own binary message and
the HELLO split over two (message boundaries mean nothing). Expects the
peer's HELLO and then N DATA frames back (an echo), and prints each
payload as one line. Exit status 0 on success; otherwise the reason is on
stderr.
"""

import argparse
import asyncio
import os
import ssl
import struct
import sys

from websockets.asyncio.client import connect

HELLO, HEARTBEAT, DATA = 1, 2, 3


def frame(envelope: bytes) -> bytes:
    return struct.pack(">I", len(envelope)) + envelope


async def run(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    uri = f"{'wss' if context else 'ws'}://127.0.0.1:{args.port}/aiomsg"
    identity = os.urandom(16)
    async with connect(uri, ssl=context, max_size=2**20) as ws:
        hello = frame(bytes((HELLO, 1)) + identity)
        await ws.send(hello[:5])
        await ws.send(hello[5:])
        for i in range(args.count):
            await ws.send(frame(bytes((DATA,)) + f"{args.prefix}{i}".encode()))

        stream = bytearray()
        peer = None
        received = 0
        while received < args.count:
            message = await ws.recv()
            if not isinstance(message, bytes):
                sys.exit(f"ws_peer.py: a text message from the bind end: {message!r}")
            stream += message
            while len(stream) >= 4:
                (length,) = struct.unpack(">I", stream[:4])
                if len(stream) < 4 + length:
                    break
                envelope = bytes(stream[4 : 4 + length])
                del stream[: 4 + length]
                if peer is None:
                    if envelope[:2] != bytes((HELLO, 1)) or length != 18:
                        sys.exit(f"ws_peer.py: expected HELLO first, got {envelope!r}")
                    peer = envelope[2:]
                elif envelope[0] == DATA:
                    print(envelope[1:].decode(), flush=True)
                    received += 1
                elif envelope[0] != HEARTBEAT:
                    sys.exit(f"ws_peer.py: unexpected frame type {envelope[0]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", default="")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--prefix", default="w")
    args = p.parse_args()
    asyncio.run(asyncio.wait_for(run(args), 20))


if __name__ == "__main__":
    main()
