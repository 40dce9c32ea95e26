"""The Python package, installed with pip, against a real egressd and a
loopback upstream: the synchronous and the asyncio client.

Run by Bazel (sh_test python_client_test, which installs the package into a
virtual environment over Debian's python3-grpcio); writes JUnit XML to
$XML_OUTPUT_FILE so that CI counts each case.
"""
import asyncio
import http.server
import os
import sys
import threading
import time
import unittest

import grpc
from egress_client import AsyncEgressClient, EgressClient, EgressError

sys.path.insert(0, os.path.dirname(__file__))
from egress_process import EgressProcess  # noqa: E402
from junit_result import run_with_junit  # noqa: E402


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    busy_seen = set()

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/repeat":
            self._send(200, b"ok", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        elif self.path == "/latin1":
            # http.server writes header values as ISO-8859-1: byte 0xE9.
            self._send(200, b"ok", [("Content-Disposition",
                                     'attachment; filename="caf\xe9.txt"')])
        elif self.path.startswith("/busy-once/"):
            # The first request for each key: 429 with Retry-After: 0.
            key = self.path
            first = key not in Upstream.busy_seen
            Upstream.busy_seen.add(key)
            if first:
                self._send(429, b"busy", [("Retry-After", "0")])
            else:
                self._send(200, b"ok")
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, b"late")
        elif self.path in ("/sse", "/sse-long"):
            events, gap = (3, 0.05) if self.path == "/sse" else (5, 0.2)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(events):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(gap)
            self.close_connection = True
        else:
            self._send(404, b"not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(200, body, [("X-Method", "POST")])


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.http.serve_forever, daemon=True).start()
        cls.base = f"http://127.0.0.1:{cls.http.server_address[1]}"
        cls.egress = EgressProcess().__enter__()
        cls.client = EgressClient(cls.egress.target)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.egress.__exit__(None, None, None)
        cls.http.shutdown()

    def test_get_returns_the_upstream_status(self):
        r = self.client.get(self.base + "/missing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"not found")

    def test_post_with_a_binary_body(self):
        body = bytes(range(256))
        r = self.client.post(self.base + "/echo", body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body)
        self.assertEqual(r.header("x-method"), "POST")

    def test_repeated_response_header(self):
        r = self.client.get(self.base + "/repeat")
        self.assertEqual([v for n, v in r.headers if n == "Set-Cookie"],
                         ["a=1", "b=2"])

    def test_header_bytes_that_are_not_utf8(self):
        # 0xE9 alone is not UTF-8: egressd sends it in raw_value, and the
        # client gives it back decoded as ISO-8859-1, like http.client.
        r = self.client.get(self.base + "/latin1")
        value = r.header("content-disposition")
        self.assertEqual(value, 'attachment; filename="caf\xe9.txt"')
        self.assertEqual(value.encode("latin-1"), b'attachment; filename="caf\xe9.txt"')

    def test_streamed_response(self):
        head = []
        body = b"".join(self.client.stream("GET", self.base + "/sse", head=head))
        self.assertEqual(head[0].status, 200)
        self.assertEqual(body, b"data: 0\n\ndata: 1\n\ndata: 2\n\n")

    def test_streams_have_no_default_deadline(self):
        # The client's deadline (0.3 s) is for calls; the stream takes ~1 s.
        client = EgressClient(self.egress.target, deadline=0.3)
        try:
            body = b"".join(client.stream("GET", self.base + "/sse-long"))
            self.assertTrue(body.endswith(b"data: 4\n\n"))
            with self.assertRaises(grpc.RpcError) as caught:
                client.get(self.base + "/slow")
            self.assertEqual(caught.exception.code(),
                             grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            client.close()

    def test_deadline(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.client.get(self.base + "/slow", deadline=0.3)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_refused_destination_and_bad_url(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.client.get("http://10.0.0.1/")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("private address", caught.exception.details())
        self.assertEqual(caught.exception.reason, "DESTINATION_DENIED")
        self.assertEqual(caught.exception.domain, "egress.local")
        self.assertIn("rule", caught.exception.metadata)
        with self.assertRaises(EgressError) as caught:
            self.client.get("ftp://example.com/")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(caught.exception.reason, "INVALID_REQUEST")
        self.assertEqual(caught.exception.field_violations[0][0], "url")

    def test_the_package_is_the_installed_one(self):
        import egress_client
        self.assertNotIn("client/python", egress_client.__file__)
        self.assertTrue(os.path.exists(os.path.join(
            os.path.dirname(egress_client.__file__), "py.typed")))

    def test_retry_of_an_answer_that_asks_for_it(self):
        r = self.client.get(self.base + "/busy-once/a")
        self.assertEqual(r.status, 429)  # not opted in
        r = self.client.get(self.base + "/busy-once/b", retry_attempts=2)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.timing.attempts, 2)

    def test_async_client_has_the_same_surface(self):
        async def run():
            async with AsyncEgressClient(self.egress.target) as client:
                r = await client.get(self.base + "/missing")
                self.assertEqual(r.status, 404)
                self.assertEqual(r.body, b"not found")
                self.assertGreater(r.timing.first_byte.ToNanoseconds(), 0)
                r = await client.post(self.base + "/echo", b"abc")
                self.assertEqual((r.status, r.body), (200, b"abc"))
                head = []
                pieces = [p async for p in client.stream("GET", self.base + "/sse",
                                                         head=head)]
                self.assertEqual(head[0].status, 200)
                self.assertEqual(head[0].header("content-type"), "text/event-stream")
                self.assertEqual(b"".join(pieces), b"data: 0\n\ndata: 1\n\ndata: 2\n\n")
                with self.assertRaises(EgressError) as caught:
                    await client.get("http://10.0.0.1/")
                self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
                self.assertEqual(caught.exception.reason, "DESTINATION_DENIED")
                with self.assertRaises(EgressError) as caught:
                    await client.get(self.base + "/slow", deadline=0.3)
                self.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
                # Many calls at once on one channel.
                replies = await asyncio.gather(
                    *[client.get(self.base + "/missing") for _ in range(20)])
                self.assertEqual({r.status for r in replies}, {404})
        asyncio.run(run())

    def test_error_reason_of_a_refused_connect_and_timing_phases(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(EgressError) as caught:
            self.client.get(f"http://127.0.0.1:{port}/")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(caught.exception.reason, "CONNECT_REFUSED")
        self.assertEqual(caught.exception.metadata["address"], "127.0.0.1")
        # A new connection each: the phases are there.
        client = EgressClient(self.egress.target)
        try:
            r = client.get(self.base + "/missing")
            t = r.timing
            self.assertEqual(t.remote_address, "127.0.0.1")
            self.assertEqual(t.remote_port, self.http.server_address[1])
            self.assertGreater(t.first_byte.ToNanoseconds(), 0)
            self.assertTrue(t.HasField("dns"))
        finally:
            client.close()


def main() -> int:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(PythonClientTest)
    return run_with_junit(suite, "PythonClientTest")


if __name__ == "__main__":
    sys.exit(main())
