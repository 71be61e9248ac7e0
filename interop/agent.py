"""The aiomsg conformance agent, over the aiomsg package from PyPI.

The aiomsg package does not ship its agent, so this is one with the same
contract (every flag takes a value; booleans are "true"/"false"):

  --role bind|connect  --host H  --port P  --send-mode publish|roundrobin
  --behavior source|sink|echo  --count N  --prefix STR
  --delivery at-most-once|at-least-once  --identity HEX32 (empty = random)
  --linger SECS  --tls true|false  --tls-cert  --tls-key  --tls-ca  --tls-server-name

A source sends prefix+i for i in range(count) and stays `linger` seconds; a
sink prints each payload as one UTF-8 line and exits after `count`; an echo
sends each payload back to its sender. Diagnostics go to stderr.

Two extensions for smartsock's interop scenarios:
  --to HEX32          a source sends only to that peer (once it is connected)
  --show-from true    a sink prints {"from": <hex>, "payload": <text>} JSON lines
At exit an at-least-once source says "unacked N" on stderr: messages still
waiting for their ACK (0 means the peer acknowledged everything in time).
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys

from aiomsg import DeliveryGuarantee, SendMode, Søcket


def boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise argparse.ArgumentTypeError("expected true or false")
    return text == "true"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=["bind", "connect"], default="connect")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=25000)
    p.add_argument("--send-mode", choices=["publish", "roundrobin"], default="roundrobin")
    p.add_argument("--behavior", choices=["source", "sink", "echo"], default="sink")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--prefix", default="m")
    p.add_argument("--delivery", choices=["at-most-once", "at-least-once"], default="at-most-once")
    p.add_argument("--identity", default="")
    p.add_argument("--linger", type=float, default=1.0)
    p.add_argument("--tls", type=boolean, default=False)
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--tls-ca", default="")
    p.add_argument("--tls-server-name", default="")
    p.add_argument("--to", default="")
    p.add_argument("--show-from", type=boolean, default=False)
    return p.parse_args()


def tls_context(args: argparse.Namespace):
    if not args.tls:
        return None
    if args.role == "bind":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        return context
    if args.tls_server_name and args.tls_server_name != args.host:
        # aiomsg's connect() checks the certificate against the host it dials.
        sys.exit("agent.py: --tls-server-name must equal --host with aiomsg")
    return ssl.create_default_context(cafile=args.tls_ca or None)


async def wait_for_peer(sock: Søcket, peer: bytes) -> None:
    # aiomsg drops a by-identity send to a peer that is not connected yet.
    while peer not in sock._connections:
        await asyncio.sleep(0.01)


async def main(args: argparse.Namespace) -> None:
    sock = Søcket(
        send_mode=SendMode.PUBLISH if args.send_mode == "publish" else SendMode.ROUNDROBIN,
        delivery_guarantee=DeliveryGuarantee.AT_LEAST_ONCE
        if args.delivery == "at-least-once"
        else DeliveryGuarantee.AT_MOST_ONCE,
        identity=bytes.fromhex(args.identity) if args.identity else None,
    )
    async with sock:
        if args.role == "bind":
            await sock.bind(args.host, args.port, ssl_context=tls_context(args))
        else:
            await sock.connect(args.host, args.port, ssl_context=tls_context(args))

        if args.behavior == "source":
            to = bytes.fromhex(args.to) if args.to else None
            if to:
                await wait_for_peer(sock, to)
            for i in range(args.count):
                await sock.send(f"{args.prefix}{i}".encode(), identity=to)
            await asyncio.sleep(args.linger)
            if args.delivery == "at-least-once":
                print(f"unacked {len(sock.waiting_for_acks)}", file=sys.stderr, flush=True)
        elif args.behavior == "echo":
            echoed = 0
            while args.count == 0 or echoed < args.count:
                sender, message = await sock.recv_identity()
                await sock.send(message, identity=sender)
                echoed += 1
            await asyncio.sleep(args.linger)
        else:
            for _ in range(args.count):
                sender, message = await sock.recv_identity()
                text = message.decode(errors="replace")
                if args.show_from:
                    text = json.dumps({"from": sender.hex(), "payload": text})
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            # aiomsg sends its ACKs 20 ms after delivery: let the last go out.
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(parse_args()))
