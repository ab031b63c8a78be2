#!/usr/bin/env python3
"""An OTLP/gRPC trace receiver for meshproxy's tests, built from the official
OpenTelemetry protobuf definitions (the `opentelemetry-proto` package's generated
`TraceService`) on `grpcio`: no collector can be installed here, and a receiver written
from the same definitions by another implementation is what checks our encoder.

It listens on 127.0.0.1 with a port the OS picks and prints `PORT <n>` once it serves;
then, for every span it receives, one JSON line on stdout:
`{"trace_id", "span_id", "parent_span_id" (hex, "" for none), "name", "kind" (the
SpanKind name), "start", "end" (unix nanos), "status" (StatusCode name), "service"
(the resource's service.name), "attributes" {key: string value}}`.
It runs until stdin closes. With `--http` it is an OTLP/HTTP receiver instead
(`POST /v1/traces`, an `application/x-protobuf` ExportTraceServiceRequest).
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def value(v):
    """An AnyValue as text."""
    kind = v.WhichOneof("value")
    return "" if kind is None else str(getattr(v, kind))


# Exports arrive on several threads at once: one whole line at a time.
OUT = threading.Lock()


def report(request):
    """Prints every span of an ExportTraceServiceRequest."""
    for rs in request.resource_spans:
        service = ""
        for a in rs.resource.attributes:
            if a.key == "service.name":
                service = value(a.value)
        for ss in rs.scope_spans:
            for s in ss.spans:
                line = {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": trace_pb2.Status.StatusCode.Name(s.status.code),
                    "service": service,
                    "attributes": {a.key: value(a.value) for a in s.attributes},
                }
                with OUT:
                    sys.stdout.write(json.dumps(line) + "\n")
                    sys.stdout.flush()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP/gRPC: prints every span of every export."""

    def Export(self, request, context):
        report(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class HttpReceiver(BaseHTTPRequestHandler):
    """OTLP/HTTP: a protobuf body on POST /v1/traces."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
            self.send_response(400)
            self.end_headers()
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        report(request)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    if "--http" in sys.argv:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), HttpReceiver)
        print(f"PORT {httpd.server_address[1]}", flush=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        sys.stdin.read()
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
