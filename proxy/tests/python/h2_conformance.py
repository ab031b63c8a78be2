#!/usr/bin/env python3
"""h2spec-style HTTP/2 conformance checks against an h2c (prior knowledge) listener.

Usage: h2_conformance.py --target HOST:PORT --authority HOST [--path /] [--timeout S]
                         [--only NAME,...]

Each check opens its own TCP connection, speaks HTTP/2 with raw frames (hpack encodes
header blocks, so invalid ones can be sent) or, for the valid requests, with the `h2`
library's state machine, and compares what the server does with what RFC 9113 / RFC 7541
require, as h2spec does:

* a connection error is a GOAWAY with the expected code; a bare close is accepted, as
  h2spec accepts it, and reported as such, except for the rules meshproxy's HTTP/2 guard
  enforces (`goaway=True`): those must get a GOAWAY;
* a stream error is a RST_STREAM on that stream (or a GOAWAY) with the expected code.

`--authority` must route to an upstream that answers 200 to GET and POST. Prints one
`PASS`/`FAIL` line per check (`XFAIL`/`XPASS` for those named by `--expect-fail`), then
a JSON summary as the last line; exits 1 when any other check failed.
"""

import argparse
import json
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
FRAME_NAMES = {
    0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
    5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION",
}
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

ERRORS = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR", 0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM", 0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
CODES = {v: k for k, v in ERRORS.items()}

S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 0x4, 0x5

ARGS = None


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream & 0x7FFFFFFF) + payload


def settings(*pairs, ack=False, stream=0):
    body = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return frame(SETTINGS, ACK if ack else 0, stream, body)


def window_update(stream, increment):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def ping(payload=b"h2-check", flags=0, stream=0):
    return frame(PING, flags, stream, payload)


class Closed(Exception):
    """The server closed the connection."""


class Conn:
    """A raw HTTP/2 client connection."""

    def __init__(self, preface=True):
        host, port = ARGS.target.rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=ARGS.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.server_settings = {}
        self.log = []  # frames received, for the report
        self.pending_block = None  # (stream, bytes) of a header block awaiting CONTINUATION
        self.responses = {}  # stream -> decoded header lists
        if preface:
            self.send(PREFACE + settings())

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            # A server that closed as soon as it saw an error: reading tells what it said.
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def block(self, headers):
        """An hpack header block (names sent as given: no lower-casing or validation)."""
        return self.encoder.encode(
            [(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v)
             for n, v in headers],
            huffman=False,
        )

    def headers(self, stream, headers, end_stream=True, end_headers=True, extra_flags=0,
                prefix=b""):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        self.send(frame(HEADERS, flags | extra_flags, stream, prefix + self.block(headers)))

    def request_headers(self, path=None, method="GET"):
        return [(":method", method), (":scheme", "http"), (":path", path or ARGS.path),
                (":authority", ARGS.authority)]

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError
            except ConnectionResetError:
                raise Closed("reset")
            if not chunk:
                raise Closed("eof")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, deadline):
        """The next frame (type, flags, stream, payload); SETTINGS are acknowledged."""
        head = self._read(9, deadline)
        length = int.from_bytes(head[:3], "big")
        ftype, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = self._read(length, deadline)
        self.log.append(describe(ftype, flags, stream, payload))
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - len(payload) % 6, 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                self.server_settings[k] = v
            self.send(settings(ack=True))
        elif ftype in (HEADERS, CONTINUATION):
            self._header_block(ftype, flags, stream, payload)
        return ftype, flags, stream, payload

    def _header_block(self, ftype, flags, stream, payload):
        if ftype == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.pending_block = (stream, payload)
        elif self.pending_block:
            self.pending_block = (stream, self.pending_block[1] + payload)
        if flags & END_HEADERS and self.pending_block:
            s, blk = self.pending_block
            self.pending_block = None
            self.responses.setdefault(s, []).append(self.decoder.decode(blk, raw=False))

    def max_frame_size(self):
        return self.server_settings.get(S_MAX_FRAME_SIZE, 16384)


def describe(ftype, flags, stream, payload):
    name = FRAME_NAMES.get(ftype, f"type=0x{ftype:x}")
    extra = ""
    if ftype in (RST_STREAM, GOAWAY):
        code = int.from_bytes(payload[:4] if ftype == RST_STREAM else payload[4:8], "big")
        extra = " " + ERRORS.get(code, hex(code))
        if ftype == GOAWAY and len(payload) > 8:
            extra += " debug=%r" % payload[8:80].decode("utf-8", "replace")
    elif ftype == PING:
        extra = " ack" if flags & ACK else ""
    elif ftype == SETTINGS:
        extra = " ack" if flags & ACK else " " + ",".join(
            "%d=%d" % struct.unpack(">HI", payload[i:i + 6])
            for i in range(0, len(payload) - len(payload) % 6, 6))
    return f"{name}(s={stream},f=0x{flags:x},len={len(payload)}){extra}"


class Outcome(Exception):
    """How a check ended: ok, expected, observed."""

    def __init__(self, ok, expected, observed):
        super().__init__(observed)
        self.ok, self.expected, self.observed = ok, expected, observed


def handshake(c):
    """Waits for the server's SETTINGS (acknowledged by recv) and ACK of ours."""
    deadline = time.monotonic() + ARGS.timeout
    got_settings = got_ack = False
    while not (got_settings and got_ack):
        ftype, flags, _, _ = c.recv(deadline)
        if ftype == SETTINGS:
            if flags & ACK:
                got_ack = True
            else:
                got_settings = True


def expect_connection_error(c, *codes, goaway=False):
    """Passes on GOAWAY with one of `codes`, or on the connection being closed (unless
    `goaway`: then only a GOAWAY passes, as for the rules meshproxy's own HTTP/2 guard
    enforces, which always says why)."""
    want = " or ".join(codes)
    expected = f"GOAWAY {want}" + ("" if goaway else " (or connection closed)")
    deadline = time.monotonic() + ARGS.timeout
    try:
        while True:
            ftype, _, _, payload = c.recv(deadline)
            if ftype == GOAWAY:
                code = ERRORS.get(int.from_bytes(payload[4:8], "big"), "?")
                return Outcome(code in codes, expected, f"GOAWAY {code}")
    except Closed as e:
        return Outcome(not goaway, expected, f"connection closed ({e}) without GOAWAY")
    except TimeoutError:
        return Outcome(False, expected, "nothing within %.0fs; frames: %s" % (
            ARGS.timeout, "; ".join(c.log[-6:])))


def expect_stream_error(c, stream, *codes):
    """Passes on RST_STREAM(stream) or GOAWAY with one of `codes`."""
    want = " or ".join(codes)
    expected = f"RST_STREAM(stream {stream}) {want} (or GOAWAY {want})"
    deadline = time.monotonic() + ARGS.timeout
    try:
        while True:
            ftype, _, s, payload = c.recv(deadline)
            if ftype == RST_STREAM and s == stream:
                code = ERRORS.get(int.from_bytes(payload[:4], "big"), "?")
                obs = f"RST_STREAM {code}"
                if code in codes:
                    obs += alive(c)
                return Outcome(code in codes, expected, obs)
            if ftype == GOAWAY:
                code = ERRORS.get(int.from_bytes(payload[4:8], "big"), "?")
                return Outcome(code in codes, expected, f"GOAWAY {code}")
            if ftype == HEADERS and s == stream:
                status = dict(c.responses.get(s, [[]])[-1]).get(":status")
                if status is not None:
                    # A response instead of a reset: the request was taken as valid (an
                    # RST may still follow, so keep reading).
                    c.log.append(f"response :status {status}")
    except Closed as e:
        return Outcome(False, expected, f"connection closed ({e}); frames: " +
                       "; ".join(c.log[-6:]))
    except TimeoutError:
        return Outcome(False, expected, "nothing within %.0fs; frames: %s" % (
            ARGS.timeout, "; ".join(c.log[-6:])))


def alive(c):
    """After a stream error the connection should still serve: PING must be answered."""
    c.send(ping(b"alive!!!"))
    deadline = time.monotonic() + ARGS.timeout
    try:
        while True:
            ftype, flags, _, payload = c.recv(deadline)
            if ftype == PING and flags & ACK and payload == b"alive!!!":
                return "; connection still up (PING answered)"
            if ftype == GOAWAY:
                return "; then " + c.log[-1]
    except (Closed, TimeoutError) as e:
        return f"; then connection {type(e).__name__}"


def expect_ping_ack(c, payload, expected):
    deadline = time.monotonic() + ARGS.timeout
    try:
        while True:
            ftype, flags, _, p = c.recv(deadline)
            if ftype == PING and flags & ACK:
                return Outcome(p == payload, expected, f"PING ACK payload {p!r}")
            if ftype == GOAWAY:
                return Outcome(False, expected, c.log[-1])
    except (Closed, TimeoutError) as e:
        return Outcome(False, expected, f"{type(e).__name__}; frames: " + "; ".join(c.log[-6:]))


def expect_response(c, stream, expected="a response with :status 200"):
    """Reads until `stream`'s response ends; Outcome on its status."""
    deadline = time.monotonic() + ARGS.timeout
    body = b""
    try:
        while True:
            ftype, flags, s, payload = c.recv(deadline)
            if s == stream and ftype == DATA:
                body += payload
            if ftype in (RST_STREAM, GOAWAY) and (s == stream or ftype == GOAWAY):
                return Outcome(False, expected, c.log[-1])
            if s == stream and ftype in (HEADERS, CONTINUATION, DATA) and flags & END_STREAM:
                break
    except (Closed, TimeoutError) as e:
        return Outcome(False, expected, f"{type(e).__name__}; frames: " + "; ".join(c.log[-6:]))
    status = dict(c.responses.get(stream, [[]])[0]).get(":status")
    return Outcome(status == "200", expected, f":status {status}, body {body[:60]!r}")


def expect_answer_then_reset(c, stream, code="STREAM_CLOSED"):
    """The request on `stream` was complete before the offending frame: its response
    (200) must still arrive, then RST_STREAM(stream) `code`, and the connection must stay
    up."""
    expected = f"the request answered (200), then RST_STREAM(stream {stream}) {code}, no GOAWAY"
    deadline = time.monotonic() + ARGS.timeout
    ended = False
    try:
        while True:
            ftype, flags, s, payload = c.recv(deadline)
            if ftype == GOAWAY:
                return Outcome(False, expected, c.log[-1])
            if s == stream and ftype in (HEADERS, DATA) and flags & END_STREAM:
                ended = True
            if ftype == RST_STREAM and s == stream:
                got = ERRORS.get(int.from_bytes(payload[:4], "big"), "?")
                status = dict(c.responses.get(stream, [[]])[0]).get(":status")
                obs = f":status {status}, {'ended' if ended else 'not ended'}, RST_STREAM {got}"
                ok = got == code and ended and status == "200"
                if ok:
                    obs += alive(c)
                    ok = "still up" in obs
                return Outcome(ok, expected, obs)
    except (Closed, TimeoutError) as e:
        return Outcome(False, expected, f"{type(e).__name__}; frames: " + "; ".join(c.log[-6:]))


# ---------------------------------------------------------------------------------------
# Checks: each returns an Outcome. Names follow h2spec's section numbering loosely.
# ---------------------------------------------------------------------------------------

CHECKS = []


def check(name, rfc, conn="h2"):
    """Registers a check. `conn`: "h2" gets a connection that has sent the preface and an
    empty SETTINGS, "raw" one that has sent nothing, "none" none (it connects itself)."""
    def register(fn):
        CHECKS.append((name, rfc, conn, fn))
        return fn
    return register


@check("preface/invalid", "RFC 9113 §3.4", conn="raw")
def _(c):
    # The preface's request line, then not the rest of it: a client speaking HTTP/2 with
    # an invalid preface, a connection error PROTOCOL_ERROR (a GOAWAY, not a bare close).
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("preface/settings-missing", "RFC 9113 §3.4", conn="raw")
def _(c):
    # The preface must be followed by SETTINGS; a PING first is a connection error.
    c.send(PREFACE + ping())
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("ping/ack", "RFC 9113 §6.7")
def _(c):
    handshake(c)
    c.send(ping(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    return expect_ping_ack(c, b"\x01\x02\x03\x04\x05\x06\x07\x08", "PING ACK, same payload")


@check("ping/bad-length", "RFC 9113 §6.7")
def _(c):
    handshake(c)
    c.send(ping(b"123456"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("ping/non-zero-stream", "RFC 9113 §6.7")
def _(c):
    handshake(c)
    c.send(ping(stream=1))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/unknown-type-ignored", "RFC 9113 §4.1, §5.5")
def _(c):
    handshake(c)
    c.send(frame(0xFA, 0xFF, 0, b"unknown frame payload") + frame(0x77, 0, 1, b"x"))
    c.send(ping(b"unknown!"))
    return expect_ping_ack(c, b"unknown!", "unknown frames ignored, then PING ACK")


@check("frame/unknown-flags-ignored", "RFC 9113 §4.1")
def _(c):
    handshake(c)
    c.send(ping(b"flags!!!", flags=0xFE))
    return expect_ping_ack(c, b"flags!!!", "PING with undefined flags answered")


@check("frame/data-on-stream-0", "RFC 9113 §6.1")
def _(c):
    handshake(c)
    c.send(frame(DATA, END_STREAM, 0, b"data"))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/headers-on-stream-0", "RFC 9113 §6.2")
def _(c):
    handshake(c)
    c.headers(0, c.request_headers())
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/settings-on-stream-1", "RFC 9113 §6.5")
def _(c):
    handshake(c)
    c.send(settings(stream=1))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/settings-bad-length", "RFC 9113 §6.5")
def _(c):
    handshake(c)
    c.send(frame(SETTINGS, 0, 0, b"\x00\x03\x00"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/settings-ack-with-payload", "RFC 9113 §6.5")
def _(c):
    handshake(c)
    c.send(frame(SETTINGS, ACK, 0, struct.pack(">HI", S_ENABLE_PUSH, 0)))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/too-large", "RFC 9113 §4.2")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(frame(DATA, END_STREAM, 1, b"x" * (c.max_frame_size() + 1)))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/window-update-bad-length", "RFC 9113 §6.9")
def _(c):
    handshake(c)
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/rst-stream-bad-length", "RFC 9113 §6.4")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/priority-bad-length", "RFC 9113 §6.3")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x03"))
    return expect_stream_error(c, 1, "FRAME_SIZE_ERROR")


@check("frame/goaway-too-short", "RFC 9113 §4.2, §6.8")
def _(c):
    handshake(c)
    c.send(frame(GOAWAY, 0, 0, b"\x00\x00\x00\x00"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("frame/headers-too-short-for-priority", "RFC 9113 §4.2, §6.2")
def _(c):
    handshake(c)
    c.send(frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, b"\x00\x00\x00"))
    return expect_connection_error(c, "FRAME_SIZE_ERROR", goaway=True)


@check("settings/enable-connect-protocol-2", "RFC 8441 §3")
def _(c):
    handshake(c)
    c.send(settings((0x8, 2)))
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("frame/rst-stream-on-idle", "RFC 9113 §5.1, §6.4")
def _(c):
    handshake(c)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CODES["CANCEL"])))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/window-update-on-idle", "RFC 9113 §5.1")
def _(c):
    handshake(c)
    c.send(window_update(1, 100))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/continuation-without-headers", "RFC 9113 §6.10")
def _(c):
    handshake(c)
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block(c.request_headers())))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/headers-interrupted", "RFC 9113 §6.10")
def _(c):
    # A header block must be continued by CONTINUATION frames of the same stream only.
    handshake(c)
    blk = c.block(c.request_headers())
    c.send(frame(HEADERS, END_STREAM, 1, blk[:3]))
    c.send(ping())
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("frame/headers-with-continuation", "RFC 9113 §6.10")
def _(c):
    handshake(c)
    blk = c.block(c.request_headers())
    c.send(frame(HEADERS, END_STREAM, 1, blk[:2]) + frame(CONTINUATION, 0, 1, blk[2:5])
           + frame(CONTINUATION, END_HEADERS, 1, blk[5:]))
    return expect_response(c, 1, "the split header block is a normal request: 200")


@check("stream/even-id", "RFC 9113 §5.1.1")
def _(c):
    handshake(c)
    c.headers(2, c.request_headers())
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("stream/decreasing-id", "RFC 9113 §5.1.1")
def _(c):
    handshake(c)
    c.headers(5, c.request_headers())
    c.headers(3, c.request_headers())
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("stream/data-on-idle", "RFC 9113 §5.1")
def _(c):
    handshake(c)
    c.send(frame(DATA, END_STREAM, 1, b"x"))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("stream/data-on-half-closed-remote", "RFC 9113 §5.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers())  # END_STREAM: half-closed (remote) for the server
    c.send(frame(DATA, 0, 1, b"late"))
    return expect_answer_then_reset(c, 1)


@check("stream/headers-on-half-closed-remote", "RFC 9113 §5.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers())
    # The same header list again (all indexed by now: the HPACK table is not touched).
    c.headers(1, c.request_headers())
    return expect_answer_then_reset(c, 1)


@check("stream/headers-on-half-closed-remote-new-fields", "RFC 9113 §5.1, §5.4.1")
def _(c):
    # A late header block that adds to the HPACK table cannot be dropped without the two
    # ends' tables diverging: the stream error may become a connection error (§5.4.1).
    handshake(c)
    c.headers(1, c.request_headers())
    c.headers(1, [("x-late", "new")])
    return expect_stream_error(c, 1, "STREAM_CLOSED")


@check("flow/dropped-data-credited", "RFC 9113 §6.9")
def _(c):
    # DATA after END_STREAM is refused unprocessed, but flow control still counts it: the
    # connection window must be given back, or the client's window shrinks for nothing.
    handshake(c)
    # The server's own first WINDOW_UPDATE comes before this PING's ACK: only the
    # credits that follow are counted.
    c.send(ping(b"before.."))
    r = expect_ping_ack(c, b"before..", "PING ACK")
    if not r.ok:
        return r
    c.headers(1, c.request_headers())
    sent = 0
    for _ in range(3):
        c.send(frame(DATA, 0, 1, b"z" * 16000))
        sent += 16000
    c.send(ping(b"credited"))
    expected = f"WINDOW_UPDATE(stream 0) totalling {sent} before the PING ACK"
    deadline = time.monotonic() + ARGS.timeout
    credit = 0
    try:
        while True:
            ftype, flags, s, payload = c.recv(deadline)
            if ftype == WINDOW_UPDATE and s == 0:
                credit += int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if ftype == GOAWAY:
                return Outcome(False, expected, c.log[-1])
            if ftype == PING and flags & ACK and payload == b"credited":
                break
    except (Closed, TimeoutError) as e:
        return Outcome(False, expected, f"{type(e).__name__}; frames: " + "; ".join(c.log[-6:]))
    if credit != sent:
        return Outcome(False, expected, f"{credit} credited")
    c.headers(3, c.request_headers())
    r = expect_response(c, 3)
    return Outcome(r.ok, expected + ", then a new request served",
                   f"{credit} credited; stream 3: {r.observed}")


@check("stream/data-on-closed", "RFC 9113 §5.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers())
    r = expect_response(c, 1)
    if not r.ok:
        return Outcome(False, "a first response, then STREAM_CLOSED", r.observed)
    c.send(frame(DATA, 0, 1, b"late"))
    return expect_stream_error(c, 1, "STREAM_CLOSED")


@check("stream/depends-on-itself", "RFC 9113 §5.3.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(), extra_flags=PRIORITY_FLAG,
              prefix=struct.pack(">IB", 1, 15))
    return expect_stream_error(c, 1, "PROTOCOL_ERROR")


@check("settings/ack", "RFC 9113 §6.5.3")
def _(c):
    handshake(c)  # waits for the ACK of the client's SETTINGS
    c.send(settings((S_MAX_CONCURRENT_STREAMS, 100), (S_INITIAL_WINDOW_SIZE, 1 << 20)))
    deadline = time.monotonic() + ARGS.timeout
    try:
        while True:
            ftype, flags, _, _ = c.recv(deadline)
            if ftype == SETTINGS and flags & ACK:
                return Outcome(True, "SETTINGS ACK", "SETTINGS ACK")
    except (Closed, TimeoutError) as e:
        return Outcome(False, "SETTINGS ACK", type(e).__name__)


@check("settings/unknown-id-ignored", "RFC 9113 §6.5.2")
def _(c):
    handshake(c)
    c.send(settings((0xFF, 1), (0x4242, 7)) + ping(b"unknown."))
    return expect_ping_ack(c, b"unknown.", "unknown settings ignored, then PING ACK")


@check("settings/enable-push-2", "RFC 9113 §6.5.2")
def _(c):
    handshake(c)
    c.send(settings((S_ENABLE_PUSH, 2)))
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("settings/initial-window-too-large", "RFC 9113 §6.5.2")
def _(c):
    handshake(c)
    c.send(settings((S_INITIAL_WINDOW_SIZE, 1 << 31)))
    return expect_connection_error(c, "FLOW_CONTROL_ERROR", goaway=True)


@check("settings/max-frame-size-too-small", "RFC 9113 §6.5.2")
def _(c):
    handshake(c)
    c.send(settings((S_MAX_FRAME_SIZE, 16383)))
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("settings/max-frame-size-too-large", "RFC 9113 §6.5.2")
def _(c):
    handshake(c)
    c.send(settings((S_MAX_FRAME_SIZE, 1 << 24)))
    return expect_connection_error(c, "PROTOCOL_ERROR", goaway=True)


@check("settings/initial-window-overflows-open-stream", "RFC 9113 §6.9.2")
def _(c):
    # A SETTINGS change that pushes an open stream's window past 2^31-1.
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(window_update(1, (1 << 31) - 1 - 65535))  # now exactly 2^31-1
    c.send(settings((S_INITIAL_WINDOW_SIZE, 65536)))
    return expect_connection_error(c, "FLOW_CONTROL_ERROR")


@check("flow/window-update-zero-connection", "RFC 9113 §6.9")
def _(c):
    handshake(c)
    c.send(window_update(0, 0))
    return expect_connection_error(c, "PROTOCOL_ERROR")


@check("flow/window-update-zero-stream", "RFC 9113 §6.9")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(window_update(1, 0))
    return expect_stream_error(c, 1, "PROTOCOL_ERROR")


@check("flow/connection-window-overflow", "RFC 9113 §6.9.1")
def _(c):
    handshake(c)
    c.send(window_update(0, (1 << 31) - 1))
    return expect_connection_error(c, "FLOW_CONTROL_ERROR")


@check("flow/stream-window-overflow", "RFC 9113 §6.9.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(window_update(1, (1 << 31) - 1))
    return expect_stream_error(c, 1, "FLOW_CONTROL_ERROR")


def malformed(name, headers_fn, rfc="RFC 9113 §8.1.1, §8.2, §8.3"):
    """A request whose header list is malformed: a stream error PROTOCOL_ERROR."""
    @check(name, rfc)
    def _(c):
        handshake(c)
        c.headers(1, headers_fn(c))
        return expect_stream_error(c, 1, "PROTOCOL_ERROR")


def base(c, drop=(), add=()):
    return [(n, v) for n, v in c.request_headers() if n not in drop] + list(add)


malformed("headers/uppercase-name", lambda c: base(c, add=[("X-Upper", "v")]), "RFC 9113 §8.2.1")
malformed("headers/connection-specific", lambda c: base(c, add=[("connection", "keep-alive")]),
          "RFC 9113 §8.2.2")
malformed("headers/transfer-encoding", lambda c: base(c, add=[("transfer-encoding", "chunked")]),
          "RFC 9113 §8.2.2")
malformed("headers/upgrade", lambda c: base(c, add=[("upgrade", "websocket")]),
          "RFC 9113 §8.2.2")
malformed("headers/te-not-trailers", lambda c: base(c, add=[("te", "gzip")]), "RFC 9113 §8.2.2")
malformed("headers/missing-method", lambda c: base(c, drop=(":method",)), "RFC 9113 §8.3.1")
malformed("headers/missing-scheme", lambda c: base(c, drop=(":scheme",)), "RFC 9113 §8.3.1")
malformed("headers/missing-path", lambda c: base(c, drop=(":path",)), "RFC 9113 §8.3.1")
malformed("headers/empty-path", lambda c: base(c, drop=(":path",), add=[(":path", "")]),
          "RFC 9113 §8.3.1")
malformed("headers/duplicate-path", lambda c: base(c, add=[(":path", "/again")]),
          "RFC 9113 §8.3.1")
malformed("headers/unknown-pseudo", lambda c: base(c, add=[(":foo", "bar")]), "RFC 9113 §8.3")
malformed("headers/response-pseudo-in-request", lambda c: base(c, add=[(":status", "200")]),
          "RFC 9113 §8.3")
malformed("headers/pseudo-after-regular",
          lambda c: [(n, v) for n, v in c.request_headers() if n != ":path"]
          + [("x-a", "b"), (":path", "/")], "RFC 9113 §8.3")
malformed("headers/invalid-value-crlf", lambda c: base(c, add=[("x-a", "b\r\nx-b: c")]),
          "RFC 9113 §8.2.1")


@check("headers/te-trailers-allowed", "RFC 9113 §8.2.2")
def _(c):
    handshake(c)
    c.headers(1, base(c, add=[("te", "trailers")]))
    return expect_response(c, 1, "`te: trailers` is allowed: 200")


@check("headers/trailers-with-pseudo", "RFC 9113 §8.1")
def _(c):
    handshake(c)
    c.headers(1, c.request_headers(method="POST"), end_stream=False)
    c.send(frame(DATA, 0, 1, b"body"))
    c.headers(1, [(":method", "POST"), ("x-trailer", "t")])
    return expect_stream_error(c, 1, "PROTOCOL_ERROR")


@check("headers/content-length-mismatch", "RFC 9113 §8.1.1")
def _(c):
    handshake(c)
    c.headers(1, base(c, drop=(":method",), add=[(":method", "POST"), ("content-length", "10")]),
              end_stream=False)
    c.send(frame(DATA, END_STREAM, 1, b"abc"))
    return expect_stream_error(c, 1, "PROTOCOL_ERROR")


@check("hpack/invalid-index", "RFC 7541 §2.3.3, RFC 9113 §4.3")
def _(c):
    handshake(c)
    # Indexed header field 0x7F+0x7F = index 254: beyond the static and (empty) dynamic table.
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\xff\x7f"))
    return expect_connection_error(c, "COMPRESSION_ERROR")


@check("hpack/table-size-update-too-large", "RFC 7541 §4.2, §6.3")
def _(c):
    handshake(c)
    # Dynamic table size update to 8192, above SETTINGS_HEADER_TABLE_SIZE (4096).
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x3f\xe1\x3f" + c.block(
        c.request_headers())))
    return expect_connection_error(c, "COMPRESSION_ERROR")


# -- valid exchanges through the h2 library's state machine ------------------------------


def h2_exchange(requests, timeout=None):
    """Runs `requests` [(headers, body)] over one connection with the h2 library; returns
    {stream_id: (status, body)} or raises."""
    host, port = ARGS.target.rsplit(":", 1)
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=ARGS.timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    results, bodies, statuses = {}, {}, {}
    for headers, body in requests:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            # In frames of at most the peer's SETTINGS_MAX_FRAME_SIZE (the body is smaller
            # than the initial flow-control windows).
            step = conn.max_outbound_frame_size
            for i in range(0, len(body), step):
                conn.send_data(sid, body[i:i + step], end_stream=i + step >= len(body))
        bodies[sid] = b""
    sock.sendall(conn.data_to_send())
    deadline = time.monotonic() + (timeout or ARGS.timeout)
    while len(results) < len(requests):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise Closed("eof")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                statuses[ev.stream_id] = dict(ev.headers).get(b":status", b"").decode()
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                results[ev.stream_id] = (statuses.get(ev.stream_id), bodies[ev.stream_id])
            elif isinstance(ev, h2.events.StreamReset):
                results[ev.stream_id] = ("reset %s" % ev.error_code, b"")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise Closed(f"GOAWAY {ev.error_code}")
        sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    return results


def get_headers(path=None, method="GET"):
    return [(":method", method), (":scheme", "http"), (":path", path or ARGS.path),
            (":authority", ARGS.authority), ("user-agent", "h2-conformance")]


@check("request/get-200", conn="none", rfc="RFC 9113 §8")
def _(_):
    r = h2_exchange([(get_headers(), None)])
    status, body = r[1]
    return Outcome(status == "200", "GET routed to the upstream: 200",
                   f":status {status}, body {body[:60]!r}")


@check("request/post-body", conn="none", rfc="RFC 9113 §8.1")
def _(_):
    r = h2_exchange([(get_headers(method="POST") + [("content-length", "40000")], b"x" * 40000)])
    status, body = r[1]
    return Outcome(status == "200" and body.endswith(b" 40000"),
                   "POST with a 40000-byte body (flow-controlled) reaches the upstream: 200",
                   f":status {status}, body {body[:60]!r}")


@check("request/concurrent-streams", conn="none", rfc="RFC 9113 §5.1.2")
def _(_):
    r = h2_exchange([(get_headers(path=f"/s{i}"), None) for i in range(8)])
    statuses = sorted({s for s, _ in r.values()})
    return Outcome(statuses == ["200"] and len(r) == 8, "8 concurrent GETs: all 200",
                   f"{len(r)} responses, statuses {statuses}")


@check("request/unknown-authority-local-reply", conn="none", rfc="RFC 9113 §8.3.1")
def _(_):
    # A host outside the registry (REGISTRY_ONLY): Istio's block_all answers 502.
    h = [(n, "no-such-host.invalid" if n == ":authority" else v) for n, v in get_headers()]
    status, _ = h2_exchange([(h, None)])[1]
    return Outcome(status == "502", "unknown host: 502 on the stream, not a reset",
                   f":status {status}")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the h2c listener")
    p.add_argument("--authority", required=True, help=":authority routed to an upstream")
    p.add_argument("--path", default="/")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--only", default="", help="comma-separated check names")
    p.add_argument("--expect-fail", default="",
                   help="comma-separated checks known to fail (reported XFAIL/XPASS, not failed)")
    ARGS = p.parse_args()
    only = {s for s in ARGS.only.split(",") if s}
    known = {s for s in ARGS.expect_fail.split(",") if s}
    unknown = known - {name for name, _, _, _ in CHECKS}
    if unknown:
        p.error("--expect-fail names no such check: " + ",".join(sorted(unknown)))
    results = {}
    for name, rfc, conn, fn in CHECKS:
        if only and name not in only:
            continue
        c = None
        try:
            if conn != "none":
                c = Conn(preface=conn == "h2")
            out = fn(c)
        except Exception as e:  # a check that crashed is a failure, with why
            out = Outcome(False, "no exception", f"{type(e).__name__}: {e}")
        finally:
            if c is not None:
                c.close()
        verdict = {(True, False): "PASS", (False, False): "FAIL",
                   (True, True): "XPASS", (False, True): "XFAIL"}[(out.ok, name in known)]
        results[name] = {"ok": out.ok, "verdict": verdict, "rfc": rfc,
                         "expected": out.expected, "observed": out.observed}
        print(f"{verdict} {name} [{rfc}]: {out.observed}"
              + ("" if out.ok else f" (expected {out.expected})"), flush=True)
    names = lambda v: sorted(n for n, r in results.items() if r["verdict"] == v)
    passed, failed = names("PASS") + names("XPASS"), names("FAIL")
    print(f"{len(passed)} passed, {len(failed)} failed, {len(names('XFAIL'))} known failures",
          file=sys.stderr)
    print(json.dumps({"passed": len(passed), "failed": len(failed), "failures": failed,
                      "known_failures": names("XFAIL"), "unexpected_passes": names("XPASS"),
                      "checks": results}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
