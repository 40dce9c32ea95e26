#!/usr/bin/python3
"""Example: GET a URL through egressd and stream another.

    bazel build //client/python:egress_py
    PYTHONPATH=bazel-bin/client/python:client/python /usr/bin/python3 \
        client/python/example.py 127.0.0.1:50051 http://127.0.0.1:8000/
"""
import sys

import grpc
from egress_client import EgressClient


def main() -> int:
    server, url = sys.argv[1], sys.argv[2]
    client = EgressClient(server)
    try:
        response = client.get(url, timeout=5)
    except grpc.RpcError as e:
        print(f"{e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print(response.status, response.header("content-type"), len(response.body),
          "bytes, connection reused:", response.timing.connection_reused)
    for piece in client.stream("GET", url):
        sys.stdout.buffer.write(piece)
    return 0


if __name__ == "__main__":
    sys.exit(main())
