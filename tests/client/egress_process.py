"""Starts a real egressd (from the test's runfiles) for client tests in other
languages, on 127.0.0.1 with an ephemeral port, allowing loopback upstreams.

    with EgressProcess() as egress:
        target = egress.target  # "127.0.0.1:PORT"
"""
import os
import re
import subprocess
import tempfile
import time


class EgressProcess:
    def __init__(self, *flags: str):
        self._flags = flags
        self.target = None
        self.metrics_port = None  # with --metrics_listen=127.0.0.1:0
        self._process = None

    def __enter__(self) -> "EgressProcess":
        self._log = tempfile.NamedTemporaryFile(prefix="egressd-", suffix=".log",
                                                delete=False)
        self._process = subprocess.Popen(
            [os.environ.get("EGRESSD", os.path.join(os.getcwd(), "service/egressd")),
             "--listen=127.0.0.1:0",
             "--metrics_listen=", "--allow_cidrs=127.0.0.0/8,::1/128",
             "--allow_ports=*",
             *self._flags],
            stderr=self._log, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self._log.name) as log:
                text = log.read()
            match = re.search(r"serving gRPC on port (\d+)", text)
            if match:
                self.target = f"127.0.0.1:{match.group(1)}"
                metrics = re.search(r"metrics on port (\d+)", text)
                if metrics and metrics.group(1) != "0":
                    self.metrics_port = int(metrics.group(1))
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("egressd did not start: " + open(self._log.name).read())

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        os.unlink(self._log.name)
