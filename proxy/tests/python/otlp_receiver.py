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
It runs until stdin closes.
"""

import json
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def value(v):
    """An AnyValue as text."""
    kind = v.WhichOneof("value")
    return "" if kind is None else str(getattr(v, kind))


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Prints every span of every export."""

    def Export(self, request, context):
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
                    print(json.dumps(line), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
