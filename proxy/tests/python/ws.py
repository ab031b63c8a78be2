#!/usr/bin/env python3
"""A real third-party WebSocket peer (the `websockets` library) for meshproxy's tests.

Server mode listens on 127.0.0.1 with a port the OS picks, prints `PORT <n>` on stdout
once it accepts connections, greets each connection with a JSON text message naming the
request path and Host it saw, then echoes every message (text stays text, binary stays
binary) until the peer closes.

Client mode connects its TCP socket to the proxy (`--proxy host:port`) and speaks
WebSocket to `ws://<host><path>` over it, so the handshake's Host header is `--host`
and the proxy routes it like any intercepted request. It checks the greeting, sends text
and binary messages of several sizes, checks each echo, pings, closes with 1000 and
prints one JSON line with what happened. Exit code 0 when every check held, 1 otherwise
(the reason is in the JSON's `errors` and on stderr).
"""

import argparse
import asyncio
import json
import os
import socket
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    """Greets the connection, then echoes every message back until it closes."""
    request = ws.request
    await ws.send(
        json.dumps({"path": request.path, "host": request.headers.get("Host", "")})
    )
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def run_server():
    """Serves until killed; the chosen port goes to stdout first."""
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


def messages():
    """The messages the client sends: text and binary, empty to 1 MiB."""
    return [
        "hello",
        "h\u00e9llo \u2713 \U0001F600",
        "",
        "x" * 70_000,
        bytes(range(256)),
        b"",
        os.urandom(1 << 20),
        "bye",
    ]


async def run_client(proxy, host, path):
    """Runs the exchange through the proxy; returns the result dict."""
    result = {"errors": [], "echoed": 0, "text": 0, "binary": 0}
    errors = result["errors"]
    proxy_host, proxy_port = proxy.rsplit(":", 1)
    sock = socket.create_connection((proxy_host, int(proxy_port)), timeout=10)
    sock.setblocking(False)
    async with asyncio.timeout(30):
        async with connect(
            f"ws://{host}{path}", sock=sock, max_size=None, open_timeout=10
        ) as ws:
            result["status"] = ws.response.status_code
            hello = json.loads(await ws.recv())
            result["greeting"] = hello
            if hello.get("path") != path:
                errors.append(f"upstream saw path {hello.get('path')!r}, sent {path!r}")
            for msg in messages():
                await ws.send(msg)
                back = await ws.recv()
                if type(back) is not type(msg):
                    errors.append(
                        f"sent {type(msg).__name__}, got {type(back).__name__} back"
                    )
                elif back != msg:
                    errors.append(f"echo of a {len(msg)}-long message differs")
                else:
                    result["echoed"] += 1
                    result["text" if isinstance(msg, str) else "binary"] += 1
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)
            result["pong"] = True
            await ws.close(1000, "done")
            result["close_code"] = ws.close_code
            if ws.close_code != 1000:
                errors.append(f"close code {ws.close_code}, wanted 1000")
    return result


def main():
    """Parses arguments and runs the chosen mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("server", help="echo server on 127.0.0.1:0; prints PORT <n>")
    client = sub.add_parser("client", help="exchange messages through the proxy")
    client.add_argument("--proxy", required=True, help="the proxy's host:port")
    client.add_argument("--host", required=True, help="Host header (the service)")
    client.add_argument("--path", default="/echo", help="request path")
    args = parser.parse_args()
    if args.mode == "server":
        try:
            asyncio.run(run_server())
        except KeyboardInterrupt:
            pass
        return 0
    try:
        result = asyncio.run(run_client(args.proxy, args.host, args.path))
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        result = {"errors": [f"{type(e).__name__}: {e}"]}
    print(json.dumps(result), flush=True)
    for err in result["errors"]:
        print(f"ws client: {err}", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
