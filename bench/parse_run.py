#!/usr/bin/python3
"""One line of bench/compare's results.tsv from one load tool's report.

Columns: case, c, calls/s, p50 us, p99 us, server CPU us per call, mean
latency us, server context switches per call; empty where the tool does not
measure it, nan (and a message on stderr) when it gave no usable report.

usage: parse_run.py wrk|h2load CASE C REPORT TICKS SWITCHES HZ [OK_CALLS]
       parse_run.py egress_bench|http_floor CASE C REPORT

TICKS and SWITCHES are the server's CPU clock ticks and context switches over
the run, HZ the ticks per second; OK_CALLS (h2load) the calls egressd's
metrics counted as OK over the run.
"""
import json
import re
import sys


def us(text):
    """'1.23ms' -> 1230.0"""
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def wrk(report, ticks, switches, hz):
    calls = int(re.search(r"(\d+) requests in", report).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1)),
        # Anchored: "80.50%" in the thread stats must not read as the 50% line.
        "p50": us(re.search(r"^\s*50%\s+(\S+)", report, re.M).group(1)),
        "p99": us(re.search(r"^\s*99%\s+(\S+)", report, re.M).group(1)),
        "mean": us(re.search(r"^\s*Latency\s+(\S+)", report, re.M).group(1)),
        "cpu": ticks / hz * 1e6 / calls,
        "switches": switches / calls,
    }


def h2load(case, c, report, ticks, switches, hz, ok=None):
    seconds = float(re.search(r"finished in ([\d.]+)s", report).group(1))
    done = int(re.search(r"(\d+) succeeded", report).group(1))
    if ok is not None:
        # HTTP 200 carries any gRPC status: only calls egressd counted OK
        # count (a call h2load cut at the end may still finish, hence slack).
        if ok < done * 0.99:
            print(f"{case} c={c}: {done} answered, only {ok} OK", file=sys.stderr)
        done = min(done, ok)
    return {
        "rps": done / seconds,
        "mean": us(re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", report).group(1)),
        "cpu": ticks / hz * 1e6 / done,
        "switches": switches / done,
    }


def egress_bench(case, c, report):
    out = json.loads(report)
    failed = sum(n for code, n in out["codes"].items() if code != "OK")
    if failed:
        print(f"{case} c={c}: {failed} calls failed: {out['codes']}", file=sys.stderr)
    return {"rps": out["ok_throughput"], "p50": out["latency_us"]["p50"],
            "p99": out["latency_us"]["p99"], "cpu": out["cpu_per_call_us"]}


def http_floor(report):
    out = json.loads(report)
    return {"rps": out["throughput"], "p50": out["latency_us"]["p50"],
            "p99": out["latency_us"]["p99"], "cpu": out["cpu_per_call_us"]}


def main():
    tool, case, c, report = sys.argv[1:5]
    counts = [int(v) for v in sys.argv[5:]]
    measured = {
        "wrk": ("rps", "p50", "p99", "cpu", "mean", "switches"),
        "h2load": ("rps", "cpu", "mean", "switches"),
        "egress_bench": ("rps", "p50", "p99", "cpu"),
        "http_floor": ("rps", "p50", "p99", "cpu"),
    }[tool]
    try:
        if tool == "wrk":
            row = wrk(report, *counts)
        elif tool == "h2load":
            row = h2load(case, c, report, *counts)
        elif tool == "egress_bench":
            row = egress_bench(case, c, report)
        else:
            row = http_floor(report)
    except (AttributeError, ValueError, KeyError, ZeroDivisionError):
        # A run that produced no usable report counts as nothing, loudly.
        print(f"{case} c={c}: {tool} gave no report:\n{report}", file=sys.stderr)
        row = {key: float("nan") for key in measured}
    digits = {"switches": 2}
    columns = [f"{row[key]:.{digits.get(key, 1)}f}" if key in measured else ""
               for key in ("rps", "p50", "p99", "cpu", "mean", "switches")]
    print("\t".join([case, c] + columns))


if __name__ == "__main__":
    main()
