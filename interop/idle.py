"""An idle aiomsg link must stay up: both ends' heartbeats are understood.

  idle.py --role bind|connect --port P --seconds S

Waits for one peer, then watches that same connection for S seconds while
nothing but heartbeats crosses it (a drop and reconnect shows as a new
connection object), then sends "ping" to the peer, which must echo it back.
Exit status 0 on success; otherwise the reason is on stderr.
"""

import argparse
import asyncio
import logging
import sys

from aiomsg import Søcket


async def main(args: argparse.Namespace) -> int:
    async with Søcket() as sock:
        if args.role == "bind":
            await sock.bind("127.0.0.1", args.port)
        else:
            await sock.connect("127.0.0.1", args.port)
        await asyncio.wait_for(sock.at_least_one_connection.wait(), 10)
        (peer, first), = sock._connections.items()
        loop = asyncio.get_running_loop()
        until = loop.time() + args.seconds
        while loop.time() < until:
            await asyncio.sleep(0.2)
            if sock._connections.get(peer) is not first:
                print(f"the link to {peer.hex()} dropped while idle", file=sys.stderr)
                return 1
        await sock.send(b"ping", identity=peer)
        sender, message = await asyncio.wait_for(sock.recv_identity(), 5)
        if (sender, message) != (peer, b"ping"):
            print(f"expected ping back from {peer.hex()}, got {message!r}", file=sys.stderr)
            return 1
        print(f"link to {peer.hex()} stayed up {args.seconds:g}s", file=sys.stderr)
        return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    parser = argparse.ArgumentParser(description="an idle aiomsg link stays up")
    parser.add_argument("--role", choices=["bind", "connect"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
