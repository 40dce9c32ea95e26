"""Proves every PromQL expression of the Grafana dashboard against real data.

Starts egressd (from the runfiles) and a loopback upstream, drives traffic with
successes, upstream errors, refusals, rate-limited calls and a session
recreation, starts Debian's
Prometheus scraping egressd every second on loopback (its config checked with
promtool first), then runs each panel's expression through Prometheus's HTTP API:
each must parse and return series. Writes JUnit XML (one case per expression).
"""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import grpc
from egress_client import EgressClient

sys.path.insert(0, os.path.join(os.getcwd(), "tests/client"))
from egress_process import EgressProcess  # noqa: E402

DASHBOARD = "k8s/monitoring/egress-dashboard.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        status = 503 if self.path == "/fail" else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def drive(client: EgressClient, base: str, dead: str) -> None:
    # Twenty calls in a row go over the origin's 10/s: some are RATE_LIMITED.
    for path in ["/ok"] * 20 + ["/fail"]:
        try:
            client.get(base + path)
        except grpc.RpcError:
            pass
    for url in ("ftp://x/", "http://10.0.0.1/", dead, dead, dead):
        try:
            client.get(url, deadline=5)
        except grpc.RpcError:
            pass


def query(prometheus: str, expr: str) -> dict:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def main() -> int:
    work = tempfile.mkdtemp(prefix="egress-dashboard-")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{upstream.server_address[1]}"
    dead = f"http://127.0.0.1:{free_port()}/"
    metrics_port = free_port()
    cases = []
    # The upstream's origin under a rate limit that drive() goes over, for the
    # rate-limited panel.
    origins = os.path.join(work, "egressd.textproto")
    with open(origins, "w") as f:
        f.write(f'origins {{ match: "{base}" rate_limit {{ rate: "10/s" burst: 10 }} }}\n')
    with EgressProcess(f"--metrics_listen=127.0.0.1:{metrics_port}",
                       f"--config={origins}") as egress:
        client = EgressClient(egress.target)
        drive(client, base, dead)

        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: egress\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{metrics_port}']\n")
        check = subprocess.run(["promtool", "check", "config", config],
                               capture_output=True, text=True)
        cases.append(("promtool check config", None if check.returncode == 0
                      else check.stdout + check.stderr))
        web = free_port()
        prometheus = f"http://127.0.0.1:{web}"
        server = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={work}/data", f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prom.log"), "w"))
        try:
            # Bounded: scrapes every second; wait for a few, with traffic between.
            deadline = time.monotonic() + 60
            scrapes = 0
            while time.monotonic() < deadline and scrapes < 6:
                time.sleep(1)
                try:
                    up = query(prometheus, 'count_over_time(up{job="egress"}[1m])')
                    result = up.get("data", {}).get("result", [])
                    scrapes = int(float(result[0]["value"][1])) if result else 0
                except OSError:
                    continue
                drive(client, base, dead)
            cases.append(("prometheus scraped egressd",
                          None if scrapes >= 6 else f"only {scrapes} scrapes"))
            with open(DASHBOARD) as f:
                dashboard = json.load(f)
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = (target["expr"].replace("$namespace", ".*")
                            .replace("$pod", ".*").replace("$__rate_interval", "30s"))
                    answer = query(prometheus, expr)
                    failure = None
                    if answer.get("status") != "success":
                        failure = f"does not parse: {answer.get('error')}"
                    elif not answer["data"]["result"]:
                        failure = "returned no series"
                    name = f"{panel['title']} [{target['refId']}]"
                    cases.append((name, None if not failure else f"{expr}: {failure}"))
                    print(("ok   " if not failure else "FAIL ") + name
                          + ("" if not failure else ": " + failure))
        finally:
            server.terminate()
            server.wait(timeout=10)
            client.close()
    upstream.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    out = os.environ.get("XML_OUTPUT_FILE")
    if out:
        root = ET.Element("testsuites")
        suite = ET.SubElement(root, "testsuite", name="DashboardTest", tests=str(len(cases)))
        for name, failure in cases:
            case = ET.SubElement(suite, "testcase", name=name, classname="DashboardTest",
                                 status="run")
            if failure:
                ET.SubElement(case, "failure", message="failed").text = failure
        ET.ElementTree(root).write(out, encoding="unicode")
    failed = [c for c in cases if c[1]]
    for name, failure in failed:
        print(f"FAILED {name}: {failure}")
    print(f"{len(cases) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
