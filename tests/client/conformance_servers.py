"""Starts what the adapters' tests call, on loopback, runs a command, and
stops everything when it ends:

    /usr/bin/python3 tests/client/conformance_servers.py -- node --test ...

- egressd (a real one, from the runfiles) with a bearer token required, so
  that the adapters prove the caller's token flows; its metrics on a port.
- Debian's httpbin under `gunicorn -k gthread`: HTTP nobody here wrote.
- the extras, served from this process, for what httpbin cannot show:
  /latin1 (a header byte that is not UTF-8), /sse (timed events), /big (a
  large chunked download), /endless?id= (a body that never ends; /stats?id=
  says whether the upstream connection was closed), and an OpenAI-compatible
  /v1/chat/completions (plain, streamed, and a 404 API error) for the SDKs.

The command gets in its environment: EGRESS_TARGET, EGRESS_TOKEN,
EGRESS_METRICS (the metrics URL), HTTPBIN, EXTRAS, REFUSED (a loopback URL
nothing listens on), DENIED (a URL egressd's policy refuses) and CONFORMANCE
(the path of conformance.json).
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from egress_process import EgressProcess  # noqa: E402

TOKEN = "conformance-token-000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Extras(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    endless = {}  # id -> "streaming" | "closed"
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _start_chunked(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/latin1":
            # http.server writes header values as ISO-8859-1: byte 0xE9.
            self._send(200, b"ok", [("X-Latin", "caf\xe9")])
        elif url.path == "/sse":
            self._start_chunked("text/event-stream")
            for i in range(int(query.get("n", "3"))):
                if i:
                    time.sleep(int(query.get("gap_ms", "100")) / 1000)
                self._chunk(f"id: {i}\ndata: {{\"n\": {i}}}\n\n".encode())
            self._chunk(b"")
        elif url.path == "/big":
            self._start_chunked("application/octet-stream")
            piece = bytes(range(256)) * 1024  # 256 KiB
            for _ in range(int(query.get("mb", "1")) * 4):
                self._chunk(piece)
            self._chunk(b"")
        elif url.path == "/endless":
            key = query.get("id", "")
            with Extras.lock:
                Extras.endless[key] = "streaming"
            self._start_chunked("text/plain")
            try:
                while True:
                    self._chunk(b"x" * 1024)
                    time.sleep(0.05)
            except OSError:
                with Extras.lock:
                    Extras.endless[key] = "closed"
                self.close_connection = True
        elif url.path == "/stats":
            with Extras.lock:
                state = Extras.endless.get(query.get("id", ""), "unknown")
            self._send(200, json.dumps({"state": state}).encode(),
                       [("Content-Type", "application/json")])
        else:
            self._send(404, b"not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/chat/completions":
            self._send(404, b"not found")
            return
        self.openai_chat(json.loads(body or b"{}"))

    # An OpenAI-compatible chat completion: the answer repeats the last
    # message; model "missing" is a 404 API error as OpenAI sends it.
    def openai_chat(self, request):
        if self.headers.get("Authorization") != "Bearer sk-conformance":
            self._send(401, json.dumps({"error": {
                "message": "Incorrect API key provided", "type": "invalid_request_error",
                "param": None, "code": "invalid_api_key"}}).encode(),
                [("Content-Type", "application/json")])
            return
        model = request.get("model", "")
        if model == "missing":
            self._send(404, json.dumps({"error": {
                "message": "The model `missing` does not exist", "type": "invalid_request_error",
                "param": None, "code": "model_not_found"}}).encode(),
                [("Content-Type", "application/json"), ("x-request-id", "req_missing")])
            return
        text = request["messages"][-1]["content"]
        created = int(time.time())
        if not request.get("stream"):
            answer = {
                "id": "chatcmpl-1", "object": "chat.completion", "created": created,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "echo: " + text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
            self._send(200, json.dumps(answer).encode(),
                       [("Content-Type", "application/json"), ("x-request-id", "req_plain")])
            return
        words = text.split() or [""]
        gap = float(request.get("metadata", {}).get("gap_ms", "200")) / 1000
        self._start_chunked("text/event-stream")
        try:
            for i, word in enumerate(words):
                if i:
                    time.sleep(gap)
                chunk = {
                    "id": "chatcmpl-2", "object": "chat.completion.chunk",
                    "created": created, "model": model,
                    "choices": [{"index": 0, "finish_reason": None,
                                 "delta": {"content": word, "sent_at": time.time()}}],
                }
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except OSError:
            self.close_connection = True


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A caller that went away (the cancellation cases) is expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: conformance_servers.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="conformance-", dir=os.environ.get("TEST_TMPDIR"))
    extras = QuietServer(("127.0.0.1", 0), Extras)
    threading.Thread(target=extras.serve_forever, daemon=True).start()

    httpbin_port = free_port()
    gunicorn_log = open(os.path.join(work, "gunicorn.log"), "w")
    gunicorn = subprocess.Popen(
        ["/usr/bin/gunicorn", "-k", "gthread", "--threads", "8", "-w", "1",
         "--keep-alive", "30", "-b", f"127.0.0.1:{httpbin_port}", "httpbin:app"],
        stdout=gunicorn_log, stderr=subprocess.STDOUT)
    tokens = os.path.join(work, "tokens")
    with open(tokens, "w") as f:
        f.write(f"{TOKEN} conformance\n")
    try:
        if not wait_for_port(httpbin_port, 30):
            print("gunicorn did not start (scripts/setup.sh --tests installs gunicorn "
                  "and python3-httpbin):\n" + open(gunicorn_log.name).read(), file=sys.stderr)
            return 1
        with EgressProcess(f"--auth_tokens_file={tokens}",
                           "--metrics_listen=127.0.0.1:0") as egress:
            env = dict(os.environ)
            env.update({
                "EGRESS_TARGET": egress.target,
                "EGRESS_TOKEN": TOKEN,
                "EGRESS_METRICS": f"http://127.0.0.1:{egress.metrics_port}/metrics",
                "HTTPBIN": f"http://127.0.0.1:{httpbin_port}",
                "EXTRAS": f"http://127.0.0.1:{extras.server_address[1]}",
                "REFUSED": f"http://127.0.0.1:{free_port()}",
                "DENIED": "http://10.255.255.1",
                "CONFORMANCE": os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "conformance.json"),
            })
            return subprocess.call(argv, env=env)
    finally:
        gunicorn.terminate()
        try:
            gunicorn.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
        extras.shutdown()


if __name__ == "__main__":
    sys.exit(main())
