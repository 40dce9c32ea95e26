#!/usr/bin/env python3
"""Example: GET a URL through egressd and stream another.

    pip install ./client/python
    python3 client/python/example.py 127.0.0.1:50051 http://127.0.0.1:8000/
"""
import sys

from egress_client import EgressClient, EgressError


def main() -> int:
    server, url = sys.argv[1], sys.argv[2]
    with EgressClient(server) as client:
        try:
            response = client.get(url, timeout=5)
        except EgressError as e:
            print(f"{e.code().name} ({e.reason}): {e.details()}", file=sys.stderr)
            return 1
        t = response.timing
        print(response.status, response.header("content-type"), len(response.body),
              "bytes; reused:", t.connection_reused,
              "first byte:", t.first_byte.ToMicroseconds(), "us")
        for piece in client.stream("GET", url):
            sys.stdout.buffer.write(piece)
    return 0


if __name__ == "__main__":
    sys.exit(main())
