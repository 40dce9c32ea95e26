#!/usr/bin/python3
"""Summarizes bench/compare's raw results: a Markdown table of medians, the
ratios against the bars of the performance issue, and an SVG chart (gnuplot).

usage: summarize.py RESULTS.tsv SAT DATE MACHINE DURATION OPENED_BEFORE OPENED_AFTER OUT_PREFIX SMOKE [SLOW.tsv [SSE.jsonl [MANY.tsv ORIGINS CONCURRENCY]]]

SLOW.tsv: one line per run of 1,000 calls in flight against a 200 ms upstream:
ok calls/s, egressd peak RSS (KiB), p50 us, p99 us.
SSE.jsonl: bench/sse_streams' report for each server of the sse case.
MANY.tsv: one line per run of the many-origins case: build (this, base), calls
OK, connections opened, reused, full and resumed TLS handshakes, egressd CPU us
per call, its open descriptors after the load.
"""
import collections
import json
import statistics
import subprocess
import sys

(path, sat, date, machine, duration, opened_before, opened_after, out_prefix,
 smoke) = sys.argv[1:10]
slow_path = sys.argv[10] if len(sys.argv) > 10 else ""
sse_path = sys.argv[11] if len(sys.argv) > 11 else ""
many_path = sys.argv[12] if len(sys.argv) > 12 else ""
many_origins = int(sys.argv[13]) if len(sys.argv) > 13 else 0
many_c = int(sys.argv[14]) if len(sys.argv) > 14 else 0
sat, duration, smoke = int(sat), float(duration), smoke == "1"
rows = collections.defaultdict(list)
for line in open(path):
    parts = line.rstrip("\n").split("\t") + [""] * 8
    # case, c, calls/s, p50 us, p99 us, server CPU us/call, mean us, switches/call
    name, c = parts[0], int(parts[1])
    rows[(name, c)].append(tuple(float(v) if v else None for v in parts[2:8]))
RPS, P50, P99, CPU, MEAN, SW = range(6)


def med(name, c, i):
    values = [r[i] for r in rows.get((name, c), []) if r[i] is not None and r[i] == r[i]]
    return statistics.median(values) if values else float("nan")


def fmt(v, digits=0):
    return "" if v != v else f"{v:.{digits}f}"


ORDER = ["direct-http", "proxy-http", "egress-http", "nopool-http", "proxy-ecdsa",
         "egress-ecdsa", "nopool-ecdsa", "proxy-rsa", "egress-rsa", "nopool-rsa",
         "grpc-floor", "http-floor", "base-http", "base-ecdsa", "squid-http", "tinyproxy-http", "sync-http"]
names = sorted({n for n, _ in rows}, key=ORDER.index)
out = [f"bench/compare, {date}, {machine}; medians of {max((len(r) for r in rows.values()), default=0)} "
       f"runs of {duration:g} s each, cases alternating. c={sat}: wrk drives nginx, Squid and "
       "tinyproxy (absolute-form requests to the forward proxies), h2load drives egressd; "
       "c=1 latency of egressd from egress_bench. Server CPU and context switches per call "
       "from /proc (nginx: its worker; Squid: its worker; tinyproxy and egressd: all their "
       "threads).", "",
       f"| case | c=1 calls/s | c=1 p50 us | c=1 p99 us | c={sat} calls/s | c={sat} mean us | "
       f"c={sat} server CPU us/call | c={sat} switches/call |",
       "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for n in names:
    # The HTTP floor is one thread: its CPU per call is from its c=1 run.
    cpu = med(n, 1, CPU) if n == "http-floor" else med(n, sat, CPU)
    out.append(f"| {n} | {fmt(med(n, 1, RPS))} | {fmt(med(n, 1, P50))} | {fmt(med(n, 1, P99))} | "
               f"{fmt(med(n, sat, RPS))} | {fmt(med(n, sat, MEAN))} | {fmt(cpu, 1)} | "
               f"{fmt(med(n, sat, SW), 2)} |")


def div(a, b):
    return a / b if b else float("nan")


def ratio(label, value, bar, better_high=True, unit=""):
    ok = value >= bar if better_high else value <= bar
    return f"| {label} | {value:.2f}{unit} | {'>=' if better_high else '<='} {bar}{unit} | " \
           f"{'met' if ok else 'MISSED'} |"


out += ["", "| ratio | value | bar | |", "| --- | ---: | ---: | --- |"]
grpc_cpu, http_cpu = med("grpc-floor", sat, CPU), med("http-floor", 1, CPU)
floors = grpc_cpu + http_cpu
if ("egress-http", sat) in rows and floors == floors:
    own = med("egress-http", sat, CPU) - floors
    out.append(ratio(f"1. egressd's own cost: CPU per call above both floors (us), http, c={sat}",
                     own, 10, better_high=False))
    out.append(ratio(f"2. egressd CPU per call / (gRPC floor + HTTP floor), c={sat}",
                     div(med("egress-http", sat, CPU), floors), 1.25, better_high=False))
if ("proxy-http", sat) in rows:
    out.append(ratio(f"3. egress / nginx keep-alive proxy, calls/s, http, c={sat}",
                     div(med("egress-http", sat, RPS), med("proxy-http", sat, RPS)), 0.5))
if ("grpc-floor", 1) in rows:
    over = med("egress-http", 1, P50) - med("direct-http", 1, P50) - med("grpc-floor", 1, P50)
    out.append(ratio("4. c=1 p50: egress - (direct + gRPC floor) (us)", over, 20,
                     better_high=False))
# The peers egress replaces: Squid as a forward proxy (bars of the
# performance issue), tinyproxy for reference.
if ("squid-http", sat) in rows and ("egress-http", sat) in rows:
    out.append(ratio(f"9. egressd CPU per call / Squid's, http, c={sat}",
                     div(med("egress-http", sat, CPU), med("squid-http", sat, CPU)), 1.0,
                     better_high=False))
    out.append(ratio(f"10. egressd calls/s / Squid's, http, c={sat}",
                     div(med("egress-http", sat, RPS), med("squid-http", sat, RPS)), 1.25))
if ("squid-http", 1) in rows and ("egress-http", 1) in rows:
    out.append(ratio("11. egressd c=1 p50 / Squid's c=1 p50, http",
                     div(med("egress-http", 1, P50), med("squid-http", 1, P50)), 1.0,
                     better_high=False))
if ("egress-http", sat) in rows and floors == floors:
    out.append(ratio(f"12. egressd's own cost above the two floors (us), http, c={sat}",
                     med("egress-http", sat, CPU) - floors, 15, better_high=False))
if ("sync-http", sat) in rows and ("egress-http", sat) in rows:
    # The performance issue's prototype: adopted only if it wins by 20% on CPU.
    out.append(ratio(f"prototype: sync_egress CPU per call / egressd's, http, c={sat}",
                     div(med("sync-http", sat, CPU), med("egress-http", sat, CPU)), 0.8,
                     better_high=False))
    out.append(f"| prototype: sync_egress calls/s / egressd's, http, c={sat} | "
               f"{div(med('sync-http', sat, RPS), med('egress-http', sat, RPS)):.2f} | | |")
    if ("sync-http", 1) in rows and ("egress-http", 1) in rows:
        out.append(f"| prototype: sync_egress c=1 p50 / egressd's | "
                   f"{div(med('sync-http', 1, P50), med('egress-http', 1, P50)):.2f} | | |")
if ("tinyproxy-http", sat) in rows and ("egress-http", sat) in rows:
    out.append(f"| egressd calls/s / tinyproxy's, http, c={sat} | "
               f"{div(med('egress-http', sat, RPS), med('tinyproxy-http', sat, RPS)):.2f} | | |")
for proto, bar in (("http", None), ("ecdsa", 15.0), ("rsa", 15.0)):
    if ("egress-" + proto, sat) in rows and ("nopool-" + proto, sat) in rows:
        value = div(med("egress-" + proto, sat, RPS), med("nopool-" + proto, sat, RPS))
        label = f"5. pooled / no pooling, calls/s, {proto}, c={sat}"
        out.append(ratio(label, value, bar) if bar else f"| {label} | {value:.2f} | | |")
calls = sum(r[RPS] * duration for (n, c), rs in rows.items() if n.startswith("egress-")
            for r in rs if r[RPS] == r[RPS])
if calls and opened_before and opened_after:
    per10k = (float(opened_after) - float(opened_before)) / calls * 10000
    out.append(f"| new upstream connections per 10,000 pooled calls | {per10k:.2f} | "
               f"<= workers that served them (64 max) | {'met' if per10k <= 64 else 'MISSED'} |")
if ("base-http", sat) in rows:
    out.append(f"| before/after: egress-http / base-http (baseline build), c={sat} calls/s | "
               f"{div(med('egress-http', sat, RPS), med('base-http', sat, RPS)):.2f} | | |")
    out.append(f"| before/after: egress-http / base-http, server CPU per call, c={sat} | "
               f"{div(med('egress-http', sat, CPU), med('base-http', sat, CPU)):.2f} | | |")
    out.append(f"| before/after: own cost above the floors (us), egress-http / base-http | "
               f"{med('egress-http', sat, CPU) - floors:.1f} / {med('base-http', sat, CPU) - floors:.1f} | | |")
    out.append(f"| before/after: egress-http / base-http, c=1 p50 | "
               f"{div(med('egress-http', 1, P50), med('base-http', 1, P50)):.2f} | | |")
if ("base-ecdsa", sat) in rows and ("egress-ecdsa", sat) in rows:
    out.append(f"| before/after: egress-ecdsa / base-ecdsa (HTTPS), c={sat} calls/s | "
               f"{div(med('egress-ecdsa', sat, RPS), med('base-ecdsa', sat, RPS)):.2f} | | |")
    out.append(f"| before/after: egress-ecdsa / base-ecdsa, server CPU per call, c={sat} | "
               f"{div(med('egress-ecdsa', sat, CPU), med('base-ecdsa', sat, CPU)):.2f} | | |")
slow = []
if slow_path:
    for line in open(slow_path):
        rps, rss, p50, p99 = map(float, line.split("\t"))
        slow.append((rps, rss, p50, p99))
if slow:
    rps = statistics.median(r[0] for r in slow)
    rss = statistics.median(r[1] for r in slow) / 1024
    p50 = statistics.median(r[2] for r in slow) / 1000
    out.append(ratio("6. 1,000 calls in flight, 200 ms upstream: calls/s / 5000",
                     rps / 5000, 0.9)[:-1] +
               f" {rps:.0f} calls/s, p50 {p50:.0f} ms, egressd peak RSS {rss:.0f} MiB |")
if not rows:  # --sse-only or --cases many-origins: no throughput case ran
    out = [f"bench/compare, {date}, {machine}."]
sse = [json.loads(line) for line in open(sse_path) if line.strip()] if sse_path else []
if sse:
    out += ["", f"Concurrent event streams ({sse[0]['streams']:,} streams, one "
            f"{sse[0]['events_expected'] // max(sse[0]['streams'], 1)}-event stream each, "
            "an event a second; on time = delivered within 100 ms of its send):", "",
            "| server | streams ended OK | events delivered | on time | delay p50 ms | "
            "p99 ms | max ms | peak RSS MiB | CPU us/event |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sse:
        name = "egressd DoStream" if r["via"] == "egressd" else "nginx, proxy_buffering off"
        out.append(f"| {name} | {r['streams_ok']} | {r['events']} / {r['events_expected']} | "
                   f"{100 * r['on_time']:.2f}% | {r['delay_ms']['p50']:.2f} | "
                   f"{r['delay_ms']['p99']:.2f} | {r['delay_ms']['max']:.1f} | "
                   f"{max(r['peak_rss_kib'], r['hwm_kib']) / 1024:.0f} | {r['cpu_per_event_us']:.1f} |")
        if r["errors"]:
            out.append(f"| {name}: first errors | {r['errors']} | | | | | | | |")
    for r in sse:
        if r["via"] == "egressd":
            out += ["", "| sse bar | value | bar | |", "| --- | ---: | ---: | --- |",
                    ratio("7. egressd: events on time (within 100 ms)", r["on_time"], 0.99),
                    ratio("8. egressd peak RSS (GiB)",
                          max(r["peak_rss_kib"], r["hwm_kib"]) / 1024 / 1024, 1.0,
                          better_high=False)]
many = collections.defaultdict(list)
for line in open(many_path) if many_path else []:
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 8:
        many[parts[0]].append([float(v) for v in parts[1:]])
if many:
    calls = many_origins * 4
    out += ["", f"Many origins: nginx serving TLS on {many_origins:,} ports, each origin visited "
            f"4 times in turn ({calls:,} calls) at concurrency {many_c}, a fresh egressd "
            "(--keepalive_timeout=20s) per run; medians of the runs (the best reuse is 75%):", "",
            "| build | calls OK | reused | connections opened | TLS handshakes full / resumed | "
            "egressd CPU us per call | open fds after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for build in ("this", "base"):
        if build not in many:
            continue
        m = [statistics.median(col) for col in zip(*many[build])]
        name = "this build" if build == "this" else "baseline (--baseline)"
        out.append(f"| {name} | {m[0]:.0f} | {100 * m[2] / calls:.1f}% | {m[1]:.0f} | "
                   f"{m[3]:.0f} / {m[4]:.0f} | {m[5]:.0f} | {m[6]:.0f} |")
out.append("")
if rows:
    out.append("The gRPC floor is gRPC's health check answered by the same egressd; the HTTP "
               "floor is bench/http_floor (cpp-httplib alone, one thread, keep-alive GETs to the "
               "same upstream). Ratio 6 runs egressd --workers=1000 --max_inflight_per_origin=0 "
               "against nginx's echo_sleep 0.2.")
text = "\n".join(out)
print(text)
if not smoke:
    open(out_prefix + ".md", "w").write(text + "\n")
if not smoke and names:
    data = out_prefix + ".dat"
    with open(data, "w") as f:
        for i, n in enumerate(names):
            cpu = med(n, 1, CPU) if n == "http-floor" else med(n, sat, CPU)
            f.write(f"{i} {n} {med(n, sat, RPS) if n != 'http-floor' else med(n, 1, RPS):.1f} "
                    f"{cpu:.1f}\n")
    # Horizontal bars on log scales: case names stay readable, and the cases
    # without pooling (1000x slower) do not flatten the others.
    script = f"""
set terminal svg size 1000,420 dynamic font 'sans,11'
set output '{out_prefix}.svg'
set multiplot layout 1,2 title 'bench/compare, c={sat}, {date} (log scales)'
set style fill solid 0.8
set logscale x
set xrange [100:*]
set format x '%.0s%c'
set grid xtics
set yrange [{len(names) - 0.4}:-0.6]
set ytics scale 0
set title 'throughput (calls/s, higher is better)'
plot '{data}' using (100):1:(100):3:($1-0.4):($1+0.4):ytic(2) with boxxyerror notitle lc rgb '#3572b0'
set title 'server CPU per call (us, lower is better)'
set xrange [1:*]
plot '{data}' using (1):1:(1):4:($1-0.4):($1+0.4):ytic(2) with boxxyerror notitle lc rgb '#d04437'
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    print(f"\nwrote {out_prefix}.md and {out_prefix}.svg")
elif not smoke:
    print(f"\nwrote {out_prefix}.md")
