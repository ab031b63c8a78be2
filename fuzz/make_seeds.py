#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>/ (checked in; run again to refresh).

config_load: the config test fixtures (all valid ones, a spread of invalid ones) and the
bookinfo example. protocol_detect: real ClientHellos made by Python's ssl module (OpenSSL)
over memory BIOs (no network), also split across records and truncated, HTTP/1 and h2c
starts and other protocols' first bytes. h1_head: HTTP/1 requests, smuggling-style framing
included. route_match and host_parse: their targets' line formats.
"""

import pathlib
import shutil
import ssl

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def config_load():
    fixtures = ROOT / "config" / "tests" / "fixtures"
    for f in sorted((fixtures / "valid").glob("*.yaml")):
        shutil.copy(f, CORPUS / "config_load" / f"valid-{f.name}")
    invalid = sorted((fixtures / "invalid").glob("*.yaml"))
    for f in invalid[::5]:
        shutil.copy(f, CORPUS / "config_load" / f"invalid-{f.name}")
    for f in sorted((ROOT / "examples").rglob("*.yaml")):
        shutil.copy(f, CORPUS / "config_load" / f"example-{f.parent.name}-{f.name}")
    # YAML features: anchors and merge keys, flow style, tags, multi-document streams.
    write("config_load", "yaml-anchors.yaml", """\
x-port: &port {number: 80, name: http, protocol: HTTP}
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  ports: [*port]
  resolution: DNS
---
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: &meta {name: a, namespace: default}
spec: {hosts: [a.example.com], http: [{route: [{destination: {host: a.example.com}}]}]}
""")
    write("config_load", "yaml-tags.yaml", "!!map {apiVersion: !!str v1, kind: !Foo x}\n")
    write("config_load", "yaml-empty.yaml", "")
    write("config_load", "yaml-list.yaml", "- a\n- b\n")


def client_hellos():
    """(name, bytes) of ClientHellos made by OpenSSL through the ssl module."""
    out = []

    def hello(name, sni, minv=None, maxv=None, alpn=None, ciphers=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if minv:
            ctx.minimum_version = minv
        if maxv:
            ctx.maximum_version = maxv
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if ciphers:
            ctx.set_ciphers(ciphers)
        i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(i, o, server_hostname=sni)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append((name, o.read()))

    hello("tls13-sni", "reviews.default.svc.cluster.local", minv=ssl.TLSVersion.TLSv1_3)
    hello("tls12-sni", "api.example.com", maxv=ssl.TLSVersion.TLSv1_2)
    hello("tls12-nosni", None, maxv=ssl.TLSVersion.TLSv1_2)
    hello("tls13-nosni", None, minv=ssl.TLSVersion.TLSv1_3)
    hello("alpn-h2", "www.example.com", alpn=["h2", "http/1.1"])
    hello("alpn-istio", "outbound_.9080_._.reviews.default.svc.cluster.local",
          alpn=["istio-peer-exchange", "istio"])
    hello("upper-sni", "WWW.Example.COM")
    hello("long-sni", ".".join(["label%02d" % i for i in range(20)]) + ".example.com")
    hello("few-ciphers", "a.b", maxv=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    return out


def split_records(h, at):
    """The handshake of record `h` split into two records after `at` payload bytes."""
    payload = h[5:]
    a, b = payload[:at], payload[at:]
    rec = lambda p: h[:3] + len(p).to_bytes(2, "big") + p
    return rec(a) + rec(b)


def protocol_detect(hellos):
    t = "protocol_detect"
    for name, h in hellos:
        write(t, f"hello-{name}", h)
    h = dict(hellos)["tls12-sni"]
    write(t, "hello-split-records", split_records(h, 40))
    write(t, "hello-split-tiny-first", split_records(h, 3))
    write(t, "hello-truncated-record", h[: len(h) // 2])
    write(t, "hello-header-only", h[:5])
    write(t, "hello-then-data", h + b"\x17\x03\x03\x00\x05hello")
    write(t, "tls-alert", b"\x15\x03\x03\x00\x02\x02\x28")
    write(t, "sslv2-hello", bytes.fromhex("802b0103010012000000100000040000050000"
                                         "0a0100800700c0030080") + b"\x00" * 16)
    write(t, "http1-get", "GET / HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
    write(t, "http1-lf", "GET /x HTTP/1.0\nHost: a\n\n")
    write(t, "http1-absolute", "GET http://a.example.com:80/p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    write(t, "http1-connect", "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
    write(t, "http1-options-star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    write(t, "http1-partial", "POST /upload HTTP/1.")
    write(t, "http1-long-method", "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n")
    write(t, "http2-version", "GET / HTTP/2.0\r\n\r\n")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    write(t, "h2-preface", preface)
    write(t, "h2-preface-settings", preface + bytes.fromhex("000006040000000000000300000064"))
    write(t, "h2-preface-partial", preface[:10])
    write(t, "ssh-banner", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    write(t, "redis-ping", "*1\r\n$4\r\nPING\r\n")
    write(t, "postgres-startup", bytes.fromhex("0000000804d2162f"))
    write(t, "mongodb-like", bytes.fromhex("3a0000000100000000000000d4070000"))
    write(t, "smtp-ehlo", "EHLO client.example.com\r\n")
    write(t, "binary-zeros", b"\x00" * 32)
    write(t, "single-0x16", b"\x16")
    write(t, "0x16-not-tls", b"\x16\x17\x18")


H1 = {
    "get": "GET /productpage HTTP/1.1\r\nHost: productpage:9080\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
    "get-http10": "GET / HTTP/1.0\r\n\r\n",
    "get-http10-keepalive": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "post-cl": "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": "POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "chunk-ext-trailers": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3;name=value\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    "pipelined": "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok",
    "cl-te": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n"
             "0\r\n\r\nSMUGGLED",
    "te-cl": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
             "8\r\nSMUGGLED\r\n0\r\n\r\n",
    "double-cl": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl-plus": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "cl-negative": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "cl-huge": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "te-obfuscated": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-space-colon": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te-list": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-then-identity": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-http10": "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-overflow": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "ffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    "chunk-bare-lf": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    "chunk-missing-crlf": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "obs-fold": "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    "bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
    "bare-cr": "GET / HTTP/1.1\rHost: a\r\r",
    "leading-crlf": "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "nul-in-header": "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "space-before-colon": "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "two-hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "absolute-form": "GET http://a.example.com/x HTTP/1.1\r\nHost: b\r\n\r\n",
    "connect": "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\nbytes after",
    "options-star": "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade-websocket": "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "upgrade-h2c": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    "expect-100": "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
    "head": "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http2-version": "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "http09": "GET /\r\n\r\n",
    "lowercase-method": "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "tab-separators": "GET\t/\tHTTP/1.1\r\nHost:\ta\r\n\r\n",
    "long-header": "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + "a" * 3000 + "\r\n\r\n",
    "many-headers": "GET / HTTP/1.1\r\n" + "".join("X-H%d: v\r\n" % i for i in range(120)) + "\r\n",
    "percent-path": "GET /%2e%2e/admin/../x?%00=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "connection-close": "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
}


def h1_head():
    for name, req in H1.items():
        write("h1_head", name, req.encode("latin-1"))


ROUTES = {
    # METHOD target [https] / authority / listener port / headers
    "reviews-everything": "GET /API/v2/reviews?page=3&mode= \nreviews:9080\n9080\n"
                          "end-user: jason\nx-present: 1\nx-version: v2",
    "reviews-canary-excluded": "GET /api/v1/x?page=1&mode= \nreviews:9080\n9080\n"
                               "end-user: jason\nx-present: \nx-version: v1\nx-canary: true",
    "reviews-static": "HEAD /static/app.js\nReviews.Default.Svc.Cluster.Local.\n80\n",
    "reviews-health": "HEAD /health\nreviews.default\n9080\n",
    "reviews-cookie": "GET /\nreviews.default.svc\n9080\ncookie: a=b; user=jason; c=d",
    "reviews-weight": "POST /w?w=1\nreviews\n9080\nx-weight: www",
    "reviews-redirect": "GET /old/path\nreviews:9080\n9080\n",
    "reviews-teapot": "GET /teapot\nreviews\n80\n",
    "wildcard-www": "GET /\nwww.example.com\n80\n",
    "wildcard-regex-authority": "GET /\nShop.Example.Com:80\n80\n",
    "wildcard-api-net": "GET /\nfoo-api.example.net\n80\n",
    "api-https-8443": "GET /v1 https\napi.internal.example.org:8443\n8443\n",
    "ipv6-authority": "GET /\n[::1]:80\n80\n",
    "ipv4-authority": "GET /\n10.1.2.3\n80\n",
    "gateway-api-canary": "GET /api/x\nanything.example\n18080\nx-env: canary",
    "gateway-ingress-host": "GET /\ningress.example:18081\n18081\n",
    "dot-segments": "GET /public/../admin/./x/..\nreviews\n80\n",
    "empty": "",
    "no-host": "GET /\n\n0\n",
    "bad-port": "GET /\nreviews:99999\n80\n",
    "unknown-host": "DELETE /x\nunknown.example.org\n80\n",
}


def route_match():
    for name, req in ROUTES.items():
        write("route_match", name, req)


HOSTS = [
    ("reviews", "reviews.default.svc.cluster.local", "default"),
    ("reviews.default.svc.cluster.local", "*.svc.cluster.local", "other"),
    ("*.foo.com", "a.foo.com", "ns"),
    ("*.foo.com", "foo.com", "ns"),
    ("*foo.com", "foo.com", "ns"),
    ("*.foo.bar", "*.bar", "ns"),
    ("*", "anything", "ns"),
    ("login.bookinfo.com", "*.bookinfo.com", "bookinfo"),
    ("*.a.b.com", "*.b.com", "x"),
    ("Reviews:9080", "reviews", "default"),
    ("[::1]:80", "::1", "default"),
    ("[::1", "]", "default"),
    ("::1", "10.0.0.1", "default"),
    ("a.com.", "a.com", "default"),
    ("a.com:", "a.com:abc", "default"),
    ("a.com:+80", "a.com:65536", "default"),
    ("name.ns.svc.cluster.local", "name.ns", "ns"),
    (".ns.svc.cluster.local", "*.ns.svc.cluster.local", "ns"),
    ("*", "*", ""),
    ("", "", ""),
]


def host_parse():
    for i, (a, b, ns) in enumerate(HOSTS):
        write("host_parse", "pair-%02d" % i, f"{a}\n{b}\n{ns}")


def main():
    for t in ["config_load", "route_match", "host_parse", "protocol_detect", "h1_head"]:
        shutil.rmtree(CORPUS / t, ignore_errors=True)
        (CORPUS / t).mkdir(parents=True)
    config_load()
    hellos = client_hellos()
    protocol_detect(hellos)
    # The connection-level targets also see the other's inputs.
    for name, h in hellos[:3]:
        write("h1_head", f"tls-{name}", h)
    h1_head()
    route_match()
    host_parse()
    for t in sorted(CORPUS.iterdir()):
        files = list(t.iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"{t.name}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
