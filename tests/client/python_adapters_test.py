"""The Python adapters with the real libraries (Debian's python3-httpx and
python3-requests): every case of tests/client/conformance.json through httpx
(sync and async) and requests, against a real egressd, Debian's httpbin under
gunicorn and the extras of conformance_servers.py, which runs this file and
sets its environment. Then what only a real program shows: httpx's
`client.stream` over SSE, requests' `Session.mount` with `iter_lines`, the
adapters' own limits, and the optional imports.

Writes JUnit XML to $XML_OUTPUT_FILE (one case per adapter and conformance
case) so that CI counts each.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.request

import httpx
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from junit_result import run_with_junit  # noqa: E402
from egress_client import (AsyncEgressTransport, EgressAdapter, EgressClient,
                           EgressRequestError, EgressTransport, EgressTransportError)

ENV = os.environ
CONFORMANCE = json.load(open(ENV["CONFORMANCE"]))
REQUEST_KEYS = {"method", "url", "headers", "body", "body_chunks", "multipart", "timeout_s",
                "basic_auth", "cookies", "follow_redirects"}
EXPECT_KEYS = {"status", "body", "body_empty", "json", "headers", "header_bytes", "body_bytes",
               "rss_growth_mb", "events", "spread_ms", "error", "reason", "redirects", "cancel"}


def expand(text: str, case_id: str) -> str:
    return (text.replace("{httpbin}", ENV["HTTPBIN"]).replace("{extras}", ENV["EXTRAS"])
            .replace("{refused}", ENV["REFUSED"]).replace("{denied}", ENV["DENIED"])
            .replace("{id}", case_id))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fetch_direct(url: str) -> str:
    """A GET that does not go through egress (stats, metrics)."""
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def in_flight() -> float:
    match = re.search(r"^egress_requests_in_flight(?:\{[^}]*\})? (\S+)$",
                      fetch_direct(ENV["EGRESS_METRICS"]), re.M)
    return float(match.group(1)) if match else -1


class Outcome:
    """What a case produced, the same shape for every adapter."""

    def __init__(self):
        self.status = None
        self.header_lists = {}   # name -> [str values, in order] (asked names)
        self.header_raw = {}     # name -> bytes of the first value
        self.body = b""
        self.redirects = 0
        self.event_times = []
        self.rss_growth = 0.0
        self.error = None        # "connect" | "timeout" | "egress"
        self.exception = None
        self.cancel_checked = None


def check(test: unittest.TestCase, case: dict, out: Outcome) -> None:
    expect = case["expect"]
    case_id = case["name"]
    if "error" in expect:
        test.assertEqual(out.error, expect["error"], f"exception: {out.exception!r}")
        if "reason" in expect:
            test.assertEqual(getattr(out.exception, "reason", None), expect["reason"])
        return
    test.assertIsNone(out.exception, f"unexpected {out.exception!r}")
    test.assertEqual(out.status, expect["status"])
    if "body" in expect:
        test.assertEqual(out.body.decode(), expect["body"])
    if expect.get("body_empty"):
        test.assertEqual(out.body, b"")
    for path, value in expect.get("json", {}).items():
        node = json.loads(out.body)
        for part in path.split("."):
            node = node[part]
        test.assertEqual(node, expand(value, case_id) if isinstance(value, str) else value, path)
    for name, values in expect.get("headers", {}).items():
        test.assertEqual(out.header_lists[name], values)
    for name, hex_value in expect.get("header_bytes", {}).items():
        test.assertEqual(out.header_raw[name].hex(), hex_value)
    if "redirects" in expect:
        test.assertEqual(out.redirects, expect["redirects"])
    if "body_bytes" in expect:
        test.assertEqual(len(out.body), 0, "a large body is counted, not kept")
        test.assertEqual(out.body_count, expect["body_bytes"])
        test.assertLess(out.rss_growth, expect["rss_growth_mb"])
    if "events" in expect:
        test.assertEqual(len(out.event_times), expect["events"])
        spread = (out.event_times[-1] - out.event_times[0]) * 1000
        test.assertGreaterEqual(spread, expect["spread_ms"],
                                "the events came together: the body was not streamed")
    if expect.get("cancel"):
        test.assertTrue(out.cancel_checked)


def wait_cancelled(case_id: str) -> bool:
    """After a close: the upstream saw its connection closed and egressd has
    no call in flight, within 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = json.loads(fetch_direct(f"{ENV['EXTRAS']}/stats?id={case_id}"))["state"]
        if state == "closed" and in_flight() == 0:
            return True
        time.sleep(0.05)
    return False


def library_request(case: dict, case_id: str, library: str) -> dict:
    """The keyword arguments of one request, in httpx's or requests' terms."""
    req = case["request"]
    unknown = set(req) - REQUEST_KEYS
    if unknown:
        raise AssertionError(f"conformance.json: unknown request keys {unknown}")
    kw = {"method": req.get("method", "GET"), "url": expand(req["url"], case_id),
          "headers": req.get("headers", [])}
    if library == "requests":
        kw["headers"] = dict(kw["headers"])
    if "body" in req:
        kw["content" if library == "httpx" else "data"] = req["body"].encode()
    if "body_chunks" in req:
        chunks = [c.encode() for c in req["body_chunks"]]
        kw["content" if library == "httpx" else "data"] = iter(chunks)
    if "multipart" in req:
        m = req["multipart"]
        kw["files"] = {m["field"]: (m["filename"], m["content"].encode())}
    if "basic_auth" in req:
        kw["auth"] = tuple(req["basic_auth"])
    if "timeout_s" in req:
        kw["timeout"] = req["timeout_s"]
    if library == "httpx":
        kw["follow_redirects"] = req.get("follow_redirects", False)
    else:
        kw["allow_redirects"] = req.get("follow_redirects", True)
    return kw


def read_body(out: Outcome, expect: dict, pieces) -> None:
    """Reads a body the way the case asks: events as they come, a large body
    counted with the RSS sampled, or whole."""
    if "events" in expect:
        for line in pieces("lines"):
            if line.startswith("data:"):
                out.event_times.append(time.monotonic())
    elif "body_bytes" in expect:
        start, peak, count = rss_mb(), 0.0, 0
        for i, piece in enumerate(pieces("bytes")):
            count += len(piece)
            if i % 32 == 0:
                peak = max(peak, rss_mb() - start)
        out.body_count, out.rss_growth = count, peak
    else:
        out.body = b"".join(pieces("bytes"))


def httpx_head(out: Outcome, expect: dict, r: httpx.Response) -> None:
    out.status, out.redirects = r.status_code, len(r.history)
    for name in expect.get("headers", {}):
        out.header_lists[name] = r.headers.get_list(name)
    for name in expect.get("header_bytes", {}):
        out.header_raw[name] = next(v for k, v in r.headers.raw if k.lower() == name.encode())


HTTPX_ERRORS = (httpx.TimeoutException, httpx.ConnectError, EgressTransportError)


def httpx_error_kind(e: Exception) -> str:
    if isinstance(e, httpx.TimeoutException):
        return "timeout"
    return "connect" if isinstance(e, httpx.ConnectError) else "egress"


def run_httpx(client: httpx.Client, case: dict, case_id: str) -> Outcome:
    out, expect = Outcome(), case["expect"]
    kw = library_request(case, case_id, "httpx")
    try:
        with client.stream(kw.pop("method"), kw.pop("url"), **kw) as r:
            httpx_head(out, expect, r)
            if expect.get("cancel"):
                next(r.iter_raw())
                r.close()
                out.cancel_checked = wait_cancelled(case_id)
                return out
            read_body(out, expect, lambda kind: r.iter_lines() if kind == "lines"
                      else r.iter_bytes())
    except HTTPX_ERRORS as e:
        out.error, out.exception = httpx_error_kind(e), e
    return out


async def run_httpx_async(client: httpx.AsyncClient, case: dict, case_id: str) -> Outcome:
    out, expect = Outcome(), case["expect"]
    kw = library_request(case, case_id, "httpx")
    if "content" in kw and not isinstance(kw["content"], bytes):
        chunks = list(kw["content"])

        async def agen():
            for c in chunks:
                yield c
        kw["content"] = agen()
    try:
        async with client.stream(kw.pop("method"), kw.pop("url"), **kw) as r:
            httpx_head(out, expect, r)
            if expect.get("cancel"):
                await r.aiter_raw().__anext__()
                await r.aclose()
                out.cancel_checked = await asyncio.get_running_loop().run_in_executor(
                    None, wait_cancelled, case_id)
                return out
            if "events" in expect:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        out.event_times.append(time.monotonic())
            elif "body_bytes" in expect:
                start, peak, count, i = rss_mb(), 0.0, 0, 0
                async for piece in r.aiter_bytes():
                    count += len(piece)
                    if i % 32 == 0:
                        peak = max(peak, rss_mb() - start)
                    i += 1
                out.body_count, out.rss_growth = count, peak
            else:
                out.body = b"".join([p async for p in r.aiter_bytes()])
    except HTTPX_ERRORS as e:
        out.error, out.exception = httpx_error_kind(e), e
    return out


def run_requests(session: requests.Session, case: dict, case_id: str) -> Outcome:
    out, expect = Outcome(), case["expect"]
    kw = library_request(case, case_id, "requests")
    try:
        with session.request(kw.pop("method"), kw.pop("url"), stream=True, **kw) as r:
            out.status, out.redirects = r.status_code, len(r.history)
            for name in expect.get("headers", {}):
                out.header_lists[name] = r.raw.headers.getlist(name)
            for name in expect.get("header_bytes", {}):
                out.header_raw[name] = r.headers[name].encode("latin-1")
            if expect.get("cancel"):
                next(r.iter_content(1024))
                r.close()
                out.cancel_checked = wait_cancelled(case_id)
                return out
            read_body(out, expect, lambda kind: (
                r.iter_lines(decode_unicode=True) if kind == "lines"
                else r.iter_content(65536)))
    except requests.Timeout as e:
        out.error, out.exception = "timeout", e
    except requests.ConnectionError as e:
        out.error, out.exception = "connect", e
    except EgressRequestError as e:
        out.error, out.exception = "egress", e
    return out


class ConformanceTest(unittest.TestCase):
    """One test per adapter and conformance case (added below)."""

    @classmethod
    def setUpClass(cls):
        cls.egress = EgressClient(ENV["EGRESS_TARGET"], token=ENV["EGRESS_TOKEN"])
        cls.httpx = httpx.Client(transport=EgressTransport(cls.egress))
        cls.session = requests.Session()
        adapter = EgressAdapter(cls.egress)
        cls.session.mount("http://", adapter)
        cls.session.mount("https://", adapter)

    @classmethod
    def tearDownClass(cls):
        cls.httpx.close()
        cls.session.close()
        cls.egress.close()


def _add_cases():
    for n, case in enumerate(CONFORMANCE["cases"]):
        unknown = set(case["expect"]) - EXPECT_KEYS
        if unknown:
            raise SystemExit(f"conformance.json: {case['name']}: unknown expect keys {unknown}")
        for adapter in ("httpx", "httpx-async", "requests"):
            def test(self, case=case, adapter=adapter, n=n):
                if adapter in case.get("skip", {}):
                    self.skipTest(case["skip"][adapter])
                case_id = f"py-{adapter}-{n}"
                if adapter == "httpx":
                    out = run_httpx(self.httpx, case, case_id)
                elif adapter == "requests":
                    out = run_requests(self.session, case, case_id)
                else:
                    async def go():
                        async with httpx.AsyncClient(transport=AsyncEgressTransport(
                                target=ENV["EGRESS_TARGET"], token=ENV["EGRESS_TOKEN"])) as c:
                            return await run_httpx_async(c, case, case_id)
                    out = asyncio.run(go())
                check(self, case, out)
            name = f"test_{adapter.replace('-', '_')}_{case['name']}"
            setattr(ConformanceTest, name, test)


_add_cases()


class RealProgramsTest(unittest.TestCase):
    """What programs do with the real libraries, beyond the shared list."""

    def test_httpx_sse_with_client_stream_and_a_read_timeout(self):
        transport = EgressTransport(target=ENV["EGRESS_TARGET"], token=ENV["EGRESS_TOKEN"])
        # A read timeout bounds the gaps (300 ms), not the whole stream (~0.9 s).
        with httpx.Client(transport=transport, timeout=httpx.Timeout(5, read=0.6)) as c:
            with c.stream("GET", ENV["EXTRAS"] + "/sse?n=4&gap_ms=300") as r:
                self.assertEqual(r.headers["content-type"], "text/event-stream")
                ids = [line.strip() for line in r.iter_lines() if line.startswith("id:")]
            self.assertEqual(ids, ["id: 0", "id: 1", "id: 2", "id: 3"])
            # A gap longer than the read timeout is httpx's ReadTimeout.
            with self.assertRaises(httpx.ReadTimeout):
                with c.stream("GET", ENV["EXTRAS"] + "/sse?n=2&gap_ms=1500") as r:
                    list(r.iter_lines())

    def test_requests_session_mount_iter_lines_and_json(self):
        with requests.Session() as s:
            s.mount("http://", EgressAdapter(target=ENV["EGRESS_TARGET"],
                                             token=ENV["EGRESS_TOKEN"]))
            r = s.get(ENV["HTTPBIN"] + "/stream/5", stream=True, timeout=(5, 5))
            lines = [json.loads(line) for line in r.iter_lines()]
            self.assertEqual([line["id"] for line in lines], [0, 1, 2, 3, 4])
            r = s.post(ENV["HTTPBIN"] + "/post", json={"k": [1, 2]})
            self.assertEqual(r.json()["json"], {"k": [1, 2]})
            self.assertEqual(r.reason, "OK")
            self.assertTrue(r.ok)

    def test_a_body_over_the_request_limit_is_refused_before_any_call(self):
        small = EgressClient(ENV["EGRESS_TARGET"], token=ENV["EGRESS_TOKEN"])
        with httpx.Client(transport=EgressTransport(small, max_request_bytes=10)) as c:
            with self.assertRaisesRegex(EgressTransportError, "over 10 bytes"):
                c.post(ENV["HTTPBIN"] + "/post", content=b"x" * 11)
        with requests.Session() as s:
            s.mount("http://", EgressAdapter(small, max_request_bytes=10))
            with self.assertRaisesRegex(EgressRequestError, "over 10 bytes"):
                s.post(ENV["HTTPBIN"] + "/post", data=b"x" * 11)
        small.close()

    def test_a_wrong_token_is_an_egress_error_with_its_reason(self):
        with httpx.Client(transport=EgressTransport(
                target=ENV["EGRESS_TARGET"], token="wrong-token-0000000000")) as c:
            with self.assertRaises(EgressTransportError) as caught:
                c.get(ENV["HTTPBIN"] + "/get")
        self.assertEqual(caught.exception.reason, "UNAUTHENTICATED")

    def test_queue_full_keeps_the_retry_delay(self):
        # The reason classes: a limit is not a connect error, and keeps its
        # RetryInfo (checked on the class table, egressd's queue is not full).
        from egress_client._adapters import classify
        from egress_client._common import EgressError
        import grpc
        error = EgressError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        error.reason, error.retry_delay = "QUEUE_FULL", 0.5
        self.assertEqual(classify(error), "egress")
        error.reason = "CONNECT_TIMEOUT"
        self.assertEqual(classify(error), "connect_timeout")

    def test_the_package_imports_without_httpx_or_requests(self):
        code = ("import sys; sys.modules['httpx'] = None; sys.modules['requests'] = None\n"
                "import egress_client\n"
                "try:\n    egress_client.EgressTransport\nexcept ImportError:\n"
                "    print('no httpx: ok')\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "no httpx: ok", out.stderr)


def main() -> int:
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite([loader.loadTestsFromTestCase(ConformanceTest),
                                loader.loadTestsFromTestCase(RealProgramsTest)])
    return run_with_junit(suite, "PythonAdapters")


if __name__ == "__main__":
    sys.exit(main())
