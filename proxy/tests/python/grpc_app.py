#!/usr/bin/env python3
"""A real third-party gRPC peer (`grpcio`) for meshproxy's tests, without protoc codegen.

Messages are raw bytes (identity serializers). Service `echo.Echo`:

- `Unary`: answers the request as is.
- `ServerStream`: the request is a count N (ASCII digits); answers N messages `msg-<i>`.
- `BidiStream`: answers each request message as it arrives.
- `Fail`: aborts with NOT_FOUND and the message `no such thing: <request>`.
- `Slow`: sleeps `--slow-seconds` (default 3) unless cancelled, then answers `late`.
- `Flaky`: the first call carrying a given request payload aborts with UNAVAILABLE, every
  later one answers `ok after <n> calls`; so a retry by the proxy succeeds.
- `Calls`: answers how many times `Flaky` saw the request payload (ASCII digits).

Server mode listens on 127.0.0.1 with a port the OS picks and prints `PORT <n>` on stdout
once it serves. Client mode dials the proxy (`--target host:port`) in plaintext HTTP/2,
with `:authority` set to `--authority` so the proxy routes it by host, runs the cases
named by `--cases` and prints one JSON line: per case the status code name, the details,
what came back, and whether the answer was the expected one (`ok`). gRPC client-side
retries are off, so any retry seen is the proxy's.
"""

import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "echo.Echo"


class Echo:
    """The service's behaviour and its call counters."""

    def __init__(self, slow_seconds):
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.flaky_calls = {}

    def unary(self, request, context):
        """Echoes the request."""
        return request

    def server_stream(self, request, context):
        """Streams N numbered messages."""
        for i in range(int(request.decode() or "0")):
            yield f"msg-{i}".encode()

    def bidi_stream(self, request_iterator, context):
        """Echoes each message as it arrives."""
        for message in request_iterator:
            yield message

    def fail(self, request, context):
        """Aborts with NOT_FOUND."""
        context.abort(grpc.StatusCode.NOT_FOUND, f"no such thing: {request.decode()}")

    def slow(self, request, context):
        """Outlasts the caller's deadline (stops early when the call is cancelled)."""
        end = time.monotonic() + self.slow_seconds
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
        return b"late"

    def flaky(self, request, context):
        """UNAVAILABLE on the first call per payload, OK afterwards."""
        with self.lock:
            n = self.flaky_calls.get(request, 0) + 1
            self.flaky_calls[request] = n
        if n == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "first call fails")
        return f"ok after {n} calls".encode()

    def calls(self, request, context):
        """How many times Flaky saw this payload."""
        with self.lock:
            return str(self.flaky_calls.get(request, 0)).encode()


def handler(echo):
    """The generic handler for `echo.Echo` (bytes in, bytes out)."""
    methods = {
        "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(echo.server_stream),
        "BidiStream": grpc.stream_stream_rpc_method_handler(echo.bidi_stream),
        "Fail": grpc.unary_unary_rpc_method_handler(echo.fail),
        "Slow": grpc.unary_unary_rpc_method_handler(echo.slow),
        "Flaky": grpc.unary_unary_rpc_method_handler(echo.flaky),
        "Calls": grpc.unary_unary_rpc_method_handler(echo.calls),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def run_server(slow_seconds):
    """Serves until killed; the chosen port goes to stdout first."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler(Echo(slow_seconds)),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


def outcome(call):
    """Runs `call()`; returns (code name, details, value or None)."""
    try:
        value = call()
        return "OK", "", value
    except grpc.RpcError as e:
        return e.code().name, e.details() or "", None


def run_client(args):
    """Runs the named cases through the proxy; returns the results."""
    options = [
        ("grpc.default_authority", args.authority),
        ("grpc.enable_retries", 0),
        ("grpc.enable_http_proxy", 0),
    ]
    channel = grpc.insecure_channel(args.target, options=options)
    grpc.channel_ready_future(channel).result(timeout=10)
    method = lambda name: f"/{SERVICE}/{name}"  # noqa: E731
    unary = lambda name: channel.unary_unary(method(name))  # noqa: E731
    meta = tuple(
        tuple(kv.split("=", 1)) for kv in (args.metadata or []) if "=" in kv
    )
    timeout = 10.0
    results = {}

    def case(name, call, expect):
        started = time.monotonic()
        code, details, value = outcome(call)
        res = {
            "code": code,
            "details": details,
            "elapsed_ms": round((time.monotonic() - started) * 1000),
        }
        if isinstance(value, bytes):
            res["len"] = len(value)
            res["value"] = value[:64].decode(errors="replace")
        elif isinstance(value, list):
            res["count"] = len(value)
            res["values"] = [v.decode(errors="replace") for v in value[:10]]
        res["ok"] = bool(expect(code, details, value))
        results[name] = res

    for name in args.cases.split(","):
        if name == "unary":
            payload = b"hello \x00\xff grpc" * 100
            case(
                name,
                lambda: unary("Unary")(payload, timeout=timeout, metadata=meta),
                lambda c, d, v: c == "OK" and v == payload,
            )
        elif name == "server_stream":
            n = args.count
            case(
                name,
                lambda: list(
                    channel.unary_stream(method("ServerStream"))(
                        str(n).encode(), timeout=timeout, metadata=meta
                    )
                ),
                lambda c, d, v: c == "OK"
                and v == [f"msg-{i}".encode() for i in range(n)],
            )
        elif name == "bidi":
            sent = [f"bidi-{i}".encode() * (i + 1) for i in range(args.count)]
            case(
                name,
                lambda: list(
                    channel.stream_stream(method("BidiStream"))(
                        iter(sent), timeout=timeout, metadata=meta
                    )
                ),
                lambda c, d, v: c == "OK" and v == sent,
            )
        elif name == "fail":
            case(
                name,
                lambda: unary("Fail")(b"widget-7", timeout=timeout, metadata=meta),
                lambda c, d, v: c == "NOT_FOUND" and d == "no such thing: widget-7",
            )
        elif name == "slow":
            deadline = args.deadline_ms / 1000
            case(
                name,
                lambda: unary("Slow")(b"zzz", timeout=deadline, metadata=meta),
                lambda c, d, v: c == "DEADLINE_EXCEEDED",
            )
        elif name == "flaky":
            key = args.key.encode()
            case(
                name,
                lambda: unary("Flaky")(key, timeout=timeout, metadata=meta),
                lambda c, d, v: c == "OK",
            )
            _, _, calls = outcome(lambda: unary("Calls")(key, timeout=timeout))
            results[name]["server_calls"] = int(calls.decode()) if calls else -1
        else:
            results[name] = {"code": "UNKNOWN_CASE", "details": name, "ok": False}
    channel.close()
    return results


def main():
    """Parses arguments and runs the chosen mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    server = sub.add_parser("server", help="serve echo.Echo on 127.0.0.1:0")
    server.add_argument("--slow-seconds", type=float, default=3.0)
    client = sub.add_parser("client", help="run cases through the proxy")
    client.add_argument("--target", required=True, help="the proxy's host:port")
    client.add_argument("--authority", required=True, help=":authority (the service)")
    client.add_argument(
        "--cases", default="unary,server_stream,bidi", help="comma-separated"
    )
    client.add_argument("--count", type=int, default=5, help="stream lengths")
    client.add_argument("--deadline-ms", type=int, default=300, help="for `slow`")
    client.add_argument("--key", default="k", help="payload for `flaky`")
    client.add_argument(
        "--metadata", action="append", help="key=value sent with every call"
    )
    args = parser.parse_args()
    if args.mode == "server":
        try:
            run_server(args.slow_seconds)
        except KeyboardInterrupt:
            pass
        return 0
    try:
        results = run_client(args)
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
