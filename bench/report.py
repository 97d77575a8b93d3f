#!/usr/bin/env python3
"""Turns the raw results of bench/run into bench/RESULTS.md and gnuplot PNGs.

    python3 bench/report.py RESULTS_DIR OUT.md PLOTS_DIR
    python3 bench/report.py --attacks-only RESULTS_DIR OUT.md
    python3 bench/report.py --tls-only RESULTS_DIR OUT.md

RESULTS_DIR holds machine.env and the JSON lines written by bench/run (echo.jsonl, ws.jsonl,
tls.jsonl, churn.jsonl, idle.jsonl, overload.jsonl, attack.jsonl, micro.json). --attacks-only
replaces just the "## Attacks" section of OUT.md (bench/run --only attack), --tls-only just the
"## TLS" section (bench/run --only tls); either writes a document with only that section if
OUT.md does not exist. The Attacks section also shows the reference run
kept in bench/attacks-before/ (machine.env + attack.jsonl of the same scenarios before the
fixes of issue 9) when it is there. Medians over rounds; ratios are
atoll / bare Asio and, for echo, atoll and bare Asio / the plain epoll server (the kernel's own
cost, bench/baseline/epoll_echo.cpp), and for WebSocket atoll's WebSocket echo / atoll's raw
echo and / Node `ws`, and for TLS atoll-echo / bare Asio's `ssl::stream` echo.
bench/profile.md (hand-written: where the CPU goes) is appended if present.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys


def load_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def ratio(a, b):
    return a / b if a is not None and b else None


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt_bytes(v):
    if v is None:
        return "n/a"
    if abs(v) >= 1000 * 1024:
        return f"{v / 1048576:.3g} MiB"
    if abs(v) >= 1024:
        return f"{v / 1024:.3g} KiB"
    return f"{v:.0f} B"


# The attack scenarios (atoll-load attack), the server bench/run runs each against, and what
# the attackers do, in table order.
ATTACK_SCENARIOS = {
    "deflate-empty-blocks": "`atoll-ws-echo --deflate`",
    "ping-flood": "`atoll-ws-echo`",
    "reject-stream": "`atoll-http-hello --max-connections 1`",
    "proxy-tlv": "`atoll-echo --proxy-protocol v2`",
    "slowloris": "`atoll-ws-echo`",
    "fragments": "`atoll-ws-echo`",
}
ATTACK_WHAT = {
    "deflate-empty-blocks": "negotiate permessage-deflate, then send compressed messages of "
                            "16,384 empty final DEFLATE blocks (`03 00`) each, as fast as the "
                            "server takes them",
    "ping-flood": "send 125-byte pings as fast as the server takes them and never read",
    "reject-stream": "the client holds the one slot; refused clients connect and write as fast as "
                     "the socket takes it until closed, then connect again (the server answers "
                     "503)",
    "proxy-tlv": "send a 65,551-byte PROXY v2 header of 21,841 empty TLVs, one byte (echoed), "
                 "then hold the connection",
    "slowloris": "send the HTTP upgrade request one byte per second",
    "fragments": "send one message as 1-byte continuation frames, as fast as the server takes "
                 "them",
}


def replace_section(text, heading, section, before_heading):
    """`text` with its `heading` section (up to the next "## ") replaced by `section`, or
    `section` inserted before `before_heading` (or at the end)."""
    block = "\n".join(section).rstrip() + "\n\n"
    pattern = re.compile(r"^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    at = text.find("\n" + before_heading + "\n")
    if at >= 0:
        return text[: at + 1] + block + text[at + 1:]
    return text.rstrip() + "\n\n" + block


def verdict(ok):
    return "met" if ok else "**missed**"


def echo_summary(runs):
    """Medians over the rounds of one echo or ws-echo configuration."""
    return {
        "msgs": median([r["msgs_per_s"] for r in runs]),
        "user": median([get(r, "server", "user_us_per_msg") for r in runs]),
        "sys": median([get(r, "server", "sys_us_per_msg") for r in runs]),
        "cpu": median([get(r, "server", "on_cpu_us_per_msg") or get(r, "server", "cpu_us_per_msg") for r in runs]),
        "p50": median([get(r, "latency_us", "p50") for r in runs]),
        "p99": median([get(r, "latency_us", "p99") for r in runs]),
        "p999": median([get(r, "latency_us", "p999") for r in runs]),
        "load": median([r.get("load_cpu_pct") for r in runs]),
        "n": len(runs),
    }


def echo_row(m):
    """The measured columns of an echo table row."""
    return (f"{fmt(m['msgs'])} | {fmt(m['user'])} | {fmt(m['sys'])} | {fmt(m['cpu'])} | "
            f"{fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['p999'])} | {fmt(m['load'], 2)}")


ECHO_COLUMNS = ("msgs/s | server user µs/msg | server sys µs/msg | server CPU µs/msg (exact) | "
                "p50 µs | p99 µs | p99.9 µs | load-gen CPU %")


# The servers of the echo rows (bench/run's names), in table order.
ECHO_SERVERS = {
    "atoll": "atoll",
    "asio": "bare Asio",
    "epoll": "plain epoll",
}


# The servers of the WebSocket rows (bench/run's names), in table order.
WS_SERVERS = {
    "atoll-ws": "atoll WebSocket (`atoll-ws-echo`)",
    "node-ws": "Node `ws` (`ws_echo_node.mjs`)",
    "atoll": "atoll raw TCP echo (`atoll-echo`)",
}


# The servers of the TLS rows (bench/run's names), in table order.
TLS_SERVERS = {
    "atoll-tls": "atoll (`atoll-echo --tls-cert`)",
    "asio-tls": "bare Asio `ssl::stream` (`bare-asio-tls-echo`)",
}


def idle_summary(runs):
    """Medians over the rounds of one idle configuration."""
    return {
        "held": median([r["established"] for r in runs]),
        "before": median([get(r, "server", "rss_before_kib") for r in runs]),
        "after": median([get(r, "server", "rss_kib") for r in runs]),
        "per": median([get(r, "server", "rss_bytes_per_conn") for r in runs]),
    }


IDLE_HEADER = [
    "| server | connections held | RSS before | RSS with connections | RSS per connection (bytes) |",
    "|---|---:|---:|---:|---:|",
]


def idle_row(name, m):
    return (f"| {name} | {fmt(m['held'])} | {fmt(m['before'])} KiB | {fmt(m['after'])} KiB | "
            f"{fmt(m['per'])} |")


def paired_ratios(a_runs, b_runs, *keys):
    """Ratios of run r of A to run r of B (adjacent in time), as "min–max"."""
    pa = dict(a_runs)
    pb = dict(b_runs)
    paired = [ratio(get(pa[k], *keys), get(pb[k], *keys)) for k in sorted(set(pa) & set(pb))]
    paired = [p for p in paired if p is not None]
    return f"{min(paired):.2f}–{max(paired):.2f}" if paired else "n/a"


class report:
    def __init__(self, results_dir, plots_dir, rel_plots):
        self.dir = results_dir
        self.plots = plots_dir
        self.rel_plots = rel_plots
        self.env = {}
        with open(os.path.join(results_dir, "machine.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    self.env[k] = v
        self.echo = load_lines(os.path.join(results_dir, "echo.jsonl"))
        self.ws = load_lines(os.path.join(results_dir, "ws.jsonl"))
        self.tls = load_lines(os.path.join(results_dir, "tls.jsonl"))
        self.churn = load_lines(os.path.join(results_dir, "churn.jsonl"))
        self.idle = load_lines(os.path.join(results_dir, "idle.jsonl"))
        self.overload = load_lines(os.path.join(results_dir, "overload.jsonl"))
        self.attack = load_lines(os.path.join(results_dir, "attack.jsonl"))
        micro_path = os.path.join(results_dir, "micro.json")
        self.micro = json.load(open(micro_path)) if os.path.exists(micro_path) else None
        self.targets = []  # (target, measured, verdict)
        self.out = []
        self.gnuplot = shutil.which("gnuplot")
        self.plot_files = []

    def provisional(self):
        # The load average at the start (before bench/run's own build raised it) and the CPU
        # share others used right before measuring; older runs only have loadavg_before.
        load = float(self.env.get("loadavg_start", self.env.get("loadavg_before", "0")) or 0)
        busy = float(self.env.get("cpu_busy_before_pct", "0") or 0)
        return load > 0.5 or busy > 10 or self.env.get("quick") == "1"

    # ---- echo -------------------------------------------------------------------------
    def echo_table(self):
        rows = {}
        for rec in self.echo:
            r = rec["result"]
            key = (rec["server"], r["connections"])
            rows.setdefault(key, []).append((rec["round"], r))
        conns = sorted({k[1] for k in rows})
        self.echo_medians = {}
        lines = [
            f"| connections | server | {ECHO_COLUMNS} |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in conns:
            for s, name in ECHO_SERVERS.items():
                runs = [r for _, r in rows.get((s, c), [])]
                if not runs:
                    continue
                m = echo_summary(runs)
                self.echo_medians[(s, c)] = m
                lines.append(f"| {c} | {name} | {echo_row(m)} |")
        # Paired ratios: atoll's run r against bare Asio's run r (adjacent in time).
        ratio_lines = [
            "| connections | msgs/s ratio | user CPU/msg ratio | total CPU/msg ratio | paired user-CPU ratios, min–max |",
            "|---:|---:|---:|---:|---|",
        ]
        self.echo_ratios = {}
        for c in conns:
            a = self.echo_medians.get(("atoll", c))
            b = self.echo_medians.get(("asio", c))
            if not a or not b:
                continue
            spread = paired_ratios(rows.get(("atoll", c), []), rows.get(("asio", c), []),
                                   "server", "user_us_per_msg")
            rr = {
                "msgs": ratio(a["msgs"], b["msgs"]),
                "user": ratio(a["user"], b["user"]),
                "cpu": ratio(a["cpu"], b["cpu"]),
            }
            self.echo_ratios[c] = rr
            ratio_lines.append(
                f"| {c} | {fmt(rr['msgs'])} | {fmt(rr['user'])} | {fmt(rr['cpu'])} | {spread} |"
            )
            self.targets.append(
                (
                    f"echo 64 B, {c} conn: server user CPU/msg ≤ 1.0× bare Asio (aim ≤ 0.7×)",
                    f"{fmt(rr['user'])}× (user: 10 ms ticks; exact total CPU {fmt(rr['cpu'])}×)",
                    verdict(rr["user"] is not None and rr["user"] <= 1.0)
                    + (" (aim met)" if rr["user"] is not None and rr["user"] <= 0.7 else ""),
                )
            )
            self.targets.append(
                (
                    f"echo 64 B, {c} conn: msgs/s ≥ 0.95× bare Asio",
                    f"{fmt(rr['msgs'])}×",
                    verdict(rr["msgs"] is not None and rr["msgs"] >= 0.95),
                )
            )
        ratio_lines += [""] + self.echo_epoll_ratios(rows, conns)
        return lines, ratio_lines, conns

    def echo_epoll_ratios(self, rows, conns):
        """atoll and bare Asio against the plain epoll server: what each costs over the kernel."""
        lines = [
            "Against the plain epoll server (`epoll-echo`: recv/send/epoll_wait, nothing else), "
            "the same rounds:",
            "",
            "| connections | server | msgs/s ratio | total CPU/msg ratio | user CPU/msg ratio | "
            "paired total-CPU ratios, min–max |",
            "|---:|---|---:|---:|---:|---|",
        ]
        self.echo_epoll = {}
        for c in conns:
            e = self.echo_medians.get(("epoll", c))
            if not e:
                continue
            for s in ("atoll", "asio"):
                a = self.echo_medians.get((s, c))
                if not a:
                    continue
                spread = paired_ratios(rows.get((s, c), []), rows.get(("epoll", c), []),
                                       "server", "on_cpu_us_per_msg")
                rr = {
                    "msgs": ratio(a["msgs"], e["msgs"]),
                    "user": ratio(a["user"], e["user"]),
                    "cpu": ratio(a["cpu"], e["cpu"]),
                }
                self.echo_epoll[(s, c)] = rr
                lines.append(f"| {c} | {ECHO_SERVERS[s]} | {fmt(rr['msgs'])} | {fmt(rr['cpu'])} | "
                             f"{fmt(rr['user'])} | {spread} |")
            rr = self.echo_epoll.get(("atoll", c))
            if rr:
                self.targets.append(
                    (
                        f"echo 64 B, {c} conn: server total CPU/msg ≤ 1.05× plain epoll (issue 10)",
                        f"{fmt(rr['cpu'])}×",
                        verdict(rr["cpu"] is not None and rr["cpu"] <= 1.05),
                    )
                )
                self.targets.append(
                    (
                        f"echo 64 B, {c} conn: server user CPU/msg ≤ 1.15× plain epoll (issue 10)",
                        f"{fmt(rr['user'])}× (user: 10 ms ticks)",
                        verdict(rr["user"] is not None and rr["user"] <= 1.15),
                    )
                )
        return lines if self.echo_epoll else []

    def echo_plots(self, conns):
        if not self.echo_medians:
            return
        dat = os.path.join(self.dir, "echo.dat")
        with open(dat, "w") as f:
            f.write("# conns atoll_msgs asio_msgs atoll_user asio_user atoll_sys asio_sys "
                    "epoll_msgs epoll_user epoll_sys\n")
            for c in conns:
                a = self.echo_medians.get(("atoll", c), {})
                b = self.echo_medians.get(("asio", c), {})
                e = self.echo_medians.get(("epoll", c), {})
                vals = [a.get("msgs"), b.get("msgs"), a.get("user"), b.get("user"), a.get("sys"), b.get("sys"),
                        e.get("msgs"), e.get("user"), e.get("sys")]
                f.write(f'"{c}" ' + " ".join("0" if v is None else f"{v:.6g}" for v in vals) + "\n")
        self.plot(
            "echo_throughput.png",
            f"""
set title "Echo 64 B ping-pong: messages/s by connection count (median of rounds)"
set ylabel "messages / s"
set xlabel "connections"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set key top left
plot '{dat}' using 2:xtic(1) title "atoll" lc rgb "#1f77b4", '' using 3 title "bare Asio" lc rgb "#aaaaaa", \\
     '' using 8 title "plain epoll" lc rgb "#2ca02c"
""",
        )
        self.plot(
            "echo_cpu_per_msg.png",
            f"""
set title "Echo 64 B: server CPU per message (median of rounds; log scale)"
set ylabel "µs of server CPU per message"
set xlabel "connections"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [0.05:*]  # user CPU per message at 50+ connections is ~0.1 µs
set grid ytics
set key top right
plot '{dat}' using 4:xtic(1) title "atoll, user" lc rgb "#1f77b4", \\
     '' using 5 title "bare Asio, user" lc rgb "#aaaaaa", \\
     '' using 9 title "plain epoll, user" lc rgb "#2ca02c", \\
     '' using ($4+$6) title "atoll, user + system" lc rgb "#9ecae1", \\
     '' using ($5+$7) title "bare Asio, user + system" lc rgb "#dddddd", \\
     '' using ($9+$10) title "plain epoll, user + system" lc rgb "#a1d99b"
""",
        )

    # ---- WebSocket echo -------------------------------------------------------------------
    def ws_table(self):
        rows = {}
        for rec in self.ws:
            r = rec["result"]
            rows.setdefault((rec["server"], r["size"], r["connections"]), []).append((rec["round"], r))
        configs = sorted({(k[1], k[2]) for k in rows})
        self.ws_medians = {}
        self.ws_ratios = {}
        lines = [
            f"| message | connections | server | {ECHO_COLUMNS} |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size, c in configs:
            for s in WS_SERVERS:
                runs = [r for _, r in rows.get((s, size, c), [])]
                if not runs:
                    continue
                m = echo_summary(runs)
                self.ws_medians[(s, size, c)] = m
                lines.append(f"| {size:,} B | {c} | {WS_SERVERS[s]} | {echo_row(m)} |")
        ratio_lines = [
            "| message | connections | WebSocket / raw: user CPU/msg | total CPU/msg | paired user-CPU ratios, min–max | atoll / Node `ws`: msgs/s | paired msgs/s ratios, min–max | Node `ws` / atoll: total CPU/msg |",
            "|---:|---:|---:|---:|---|---:|---|---:|",
        ]
        for size, c in configs:
            w = self.ws_medians.get(("atoll-ws", size, c))
            if not w:
                continue
            raw = self.ws_medians.get(("atoll", size, c))
            node = self.ws_medians.get(("node-ws", size, c))
            rr = {
                "user": ratio(w["user"], raw["user"]) if raw else None,
                "cpu": ratio(w["cpu"], raw["cpu"]) if raw else None,
                "msgs": ratio(w["msgs"], node["msgs"]) if node else None,
                "node_cpu": ratio(node["cpu"], w["cpu"]) if node else None,
            }
            self.ws_ratios[size] = rr
            ws_runs = rows.get(("atoll-ws", size, c), [])
            cpu_spread = paired_ratios(ws_runs, rows.get(("atoll", size, c), []), "server", "user_us_per_msg")
            msgs_spread = paired_ratios(ws_runs, rows.get(("node-ws", size, c), []), "msgs_per_s")
            ratio_lines.append(
                f"| {size:,} B | {c} | {fmt(rr['user'])} | {fmt(rr['cpu'])} | {cpu_spread} | {fmt(rr['msgs'])} | {msgs_spread} | {fmt(rr['node_cpu'])} |"
            )
            what = f"WebSocket echo {size:,} B, {c} conn"
            self.targets.append(
                (
                    f"{what}: server user CPU/msg ≤ 1.5× atoll's raw echo",
                    f"{fmt(rr['user'])}× (exact total CPU {fmt(rr['cpu'])}×)" if raw else "raw echo not measured",
                    verdict(rr["user"] is not None and rr["user"] <= 1.5) if raw else "not run",
                )
            )
            self.targets.append(
                (
                    f"{what}: msgs/s ≥ 1.5× Node `ws`",
                    f"{fmt(rr['msgs'])}×" if node else "Node `ws` not measured (node/npm missing)",
                    verdict(rr["msgs"] is not None and rr["msgs"] >= 1.5) if node else "not run",
                )
            )
        if self.ws_medians:
            dat = os.path.join(self.dir, "ws.dat")
            with open(dat, "w") as f:
                f.write("# size " + " ".join(WS_SERVERS) + "\n")
                for size, c in configs:
                    vals = [get(self.ws_medians, (s, size, c), "msgs") for s in WS_SERVERS]
                    f.write(f'"{size:,} B" ' + " ".join("0" if v is None else f"{v:.6g}" for v in vals) + "\n")
            self.plot(
                "ws_echo_throughput.png",
                f"""
set title "WebSocket echo, 50 connections: messages/s (median of rounds)"
set ylabel "messages / s"
set xlabel "message payload"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set key top right
plot '{dat}' using 2:xtic(1) title "atoll WebSocket" lc rgb "#1f77b4", \\
     '' using 3 title "Node ws" lc rgb "#2ca02c", \\
     '' using 4 title "atoll raw TCP echo" lc rgb "#aaaaaa"
""",
            )
        return lines, ratio_lines

    # ---- churn ------------------------------------------------------------------------
    def churn_table(self):
        by = {}
        for rec in self.churn:
            by.setdefault(rec["server"], []).append(rec["result"])
        lines = [
            "| server | conns/s | errors (all rounds) | connect p50 µs | connect p99 µs | cycle p99 µs | server CPU µs/conn | server user µs/conn |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        med = {}
        for s in ("atoll", "asio"):
            runs = by.get(s, [])
            if not runs:
                continue
            m = {
                "cps": median([r["conns_per_s"] for r in runs]),
                "errors": sum(r["errors_total"] for r in runs),
                "c50": median([get(r, "connect_latency_us", "p50") for r in runs]),
                "c99": median([get(r, "connect_latency_us", "p99") for r in runs]),
                "y99": median([get(r, "cycle_us", "p99") for r in runs]),
                "cpu": median([get(r, "server", "on_cpu_us_per_conn") or get(r, "server", "cpu_us_per_conn") for r in runs]),
                "user": median([get(r, "server", "user_us_per_conn") for r in runs]),
            }
            med[s] = m
            lines.append(
                f"| {'atoll' if s == 'atoll' else 'bare Asio'} | {fmt(m['cps'])} | {m['errors']} | {fmt(m['c50'])} | {fmt(m['c99'])} | {fmt(m['y99'])} | {fmt(m['cpu'])} | {fmt(m['user'])} |"
            )
        if "atoll" in med and "asio" in med:
            r = ratio(med["atoll"]["cps"], med["asio"]["cps"])
            lines.append("")
            lines.append(
                f"atoll / bare Asio: connections/s **{fmt(r)}×**, server CPU per connection "
                f"{fmt(ratio(med['atoll']['cpu'], med['asio']['cpu']))}×."
            )
            self.targets.append(
                ("churn: connections/s ≥ 0.95× bare Asio", f"{fmt(r)}×", verdict(r is not None and r >= 0.95))
            )
        return lines

    # ---- idle -------------------------------------------------------------------------
    def idle_table(self):
        by = {}
        for rec in self.idle:
            by.setdefault(rec["server"], []).append(rec["result"])
        lines = list(IDLE_HEADER)
        med = {}
        for s in ("atoll", "asio"):
            runs = by.get(s, [])
            if not runs:
                continue
            m = idle_summary(runs)
            med[s] = m
            lines.append(idle_row("atoll" if s == "atoll" else "bare Asio", m))
        if "atoll" in med:
            per = med["atoll"]["per"]
            self.targets.append(
                (
                    "idle: ≤ 512 bytes of server RSS per idle connection at 10,000",
                    f"{fmt(per)} B" + (f" (bare Asio {fmt(med['asio']['per'])} B)" if "asio" in med else ""),
                    verdict(per is not None and per <= 512),
                )
            )
            dat = os.path.join(self.dir, "idle.dat")
            with open(dat, "w") as f:
                for s, label in (("atoll", "atoll"), ("asio", "bare Asio (4 KiB buffer)")):
                    if s in med and med[s]["per"] is not None:
                        f.write(f'"{label}" {med[s]["per"]:.1f}\n')
            self.plot(
                "idle_rss.png",
                f"""
set title "Server RSS per idle connection at 10,000 connections (median of rounds)"
set ylabel "bytes per connection"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.6
set yrange [0:*]
set key top left
plot '{dat}' using 2:xtic(1) title "RSS / connection" lc rgb "#1f77b4", 512 with lines lw 2 dt 2 lc rgb "#d62728" title "target 512 B"
""",
            )
        return lines

    # ---- TLS ----------------------------------------------------------------------------
    def tls_section(self):
        """The "## TLS" section: echo 1 KiB over TLS 1.3 and idle TLS connections, atoll-echo
        against bare Asio's ssl::stream echo (issue 10: no regression on TLS)."""
        doc = ["## TLS", ""]
        w = doc.append
        e = self.env
        idle_n = e.get("tls_idle_conns", "N")
        w("`atoll-load echo --tls -c 50 --size 1024 --inflight 1` and `atoll-load idle --tls -c "
          f"{idle_n} --src-ips 16` (TLS 1.3 client: OpenSSL, no certificate verification, no "
          "resumption, so every connection pays a full handshake before the measured window) "
          "against `atoll-echo --threads 1 --tls-cert --tls-key` (atoll's TLS defaults: "
          "`SSL_MODE_RELEASE_BUFFERS`, no session tickets) and `bare-asio-tls-echo --threads 1` "
          "(`bench/baseline/tls_echo_server.cpp`: `asio::ssl::stream<tcp::socket>`, "
          "async_handshake, then async_read_some into a 4 KiB buffer per connection and "
          "async_write, TLS 1.3 only, OpenSSL's defaults otherwise, as Asio's ssl example "
          "has them), both with one throwaway EC P-256 certificate made by `openssl req` for "
          "the run; alternating A B in every round, a fresh server per run. Idle: RSS per "
          "connection after the handshake and a 1-byte echo each.")
        w("")
        echo_rows, idle_rows = {}, {}
        for rec in self.tls:
            r = rec["result"]
            into = idle_rows if r.get("mode") == "idle" else echo_rows
            into.setdefault(rec["server"], []).append((rec["round"], r))
        if not self.tls:
            w("Not part of this run (no `tls.jsonl`: `bare-asio-tls-echo` or the `openssl` "
              "command was missing, or the run predates the TLS rows).")
            w("")
            return doc
        w(f"This run: commit {e.get('commit')}, {e.get('date')}, `{e.get('command')}`, "
          f"{e.get('rounds', '?')} round(s), {e.get('openssl', 'OpenSSL ?')}"
          + (f"; load average {e.get('loadavg_start')} at the start, CPUs "
             f"{e.get('cpu_busy_before_pct')} % busy before measuring" if e.get("loadavg_start") else "")
          + ".")
        w("")
        verdicts = []
        med = {}
        if echo_rows:
            w("| server | " + ECHO_COLUMNS + " |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for s, name in TLS_SERVERS.items():
                runs = [r for _, r in echo_rows.get(s, [])]
                if runs:
                    med[s] = echo_summary(runs)
                    w(f"| {name} | {echo_row(med[s])} |")
            w("")
            a, b = med.get("atoll-tls"), med.get("asio-tls")
            if a and b:
                rr = {k: ratio(a[k], b[k]) for k in ("msgs", "cpu", "user", "p99")}
                spread = paired_ratios(echo_rows["atoll-tls"], echo_rows["asio-tls"], "server",
                                       "on_cpu_us_per_msg")
                w(f"atoll / bare Asio `ssl::stream`: msgs/s **{fmt(rr['msgs'])}×**, server CPU per "
                  f"message (exact total) **{fmt(rr['cpu'])}×** (paired runs {spread}), user CPU "
                  f"per message {fmt(rr['user'])}×, p99 round trip {fmt(a['p99'])} µs against "
                  f"{fmt(b['p99'])} µs ({fmt(rr['p99'])}×).")
                w("")
                self.tls_ratios = rr
                verdicts += [
                    ("TLS echo 1 KiB, 50 conn: msgs/s ≥ 1.0× bare Asio `ssl::stream` (issue 10: "
                     "no regression)", f"{fmt(rr['msgs'])}×",
                     verdict(rr["msgs"] is not None and rr["msgs"] >= 1.0)),
                    ("TLS echo 1 KiB, 50 conn: server CPU/msg ≤ 1.0× bare Asio `ssl::stream`",
                     f"{fmt(rr['cpu'])}× (exact total; user {fmt(rr['user'])}×)",
                     verdict(rr["cpu"] is not None and rr["cpu"] <= 1.0)),
                ]
        idle_med = {}
        if idle_rows:
            doc.extend(IDLE_HEADER)
            for s, name in TLS_SERVERS.items():
                runs = [r for _, r in idle_rows.get(s, [])]
                if runs:
                    idle_med[s] = idle_summary(runs)
                    w(idle_row(name, idle_med[s]))
            w("")
            a, b = idle_med.get("atoll-tls"), idle_med.get("asio-tls")
            if a and b:
                verdicts.append(
                    (f"TLS idle at {idle_n}: server RSS per connection ≤ bare Asio `ssl::stream`'s",
                     f"{fmt(a['per'])} B (bare Asio {fmt(b['per'])} B)",
                     verdict(a["per"] is not None and b["per"] is not None and a["per"] <= b["per"])))
        if verdicts:
            w("| target | measured | |")
            w("|---|---|---|")
            for t, m, v in verdicts:
                w(f"| {t} | {m} | {v} |")
            w("")
        self.targets += verdicts
        return doc

    # ---- overload -----------------------------------------------------------------------
    def overload_table(self):
        by = {}
        for rec in self.overload:
            by.setdefault(rec["server"], []).append(rec["result"])
        names = {
            "atoll-retry0": "atoll, retry 0",
            "atoll-retry5": "atoll, retry 5 × 200 ms",
            "blocking-retry5": "blocking retry 5 × 200 ms (baseline)",
            "asio-control": "control: bare Asio, no limit (all served)",
        }
        outcomes = ["served", "closed_by_server", "reset", "timed_out", "refused", "addr_unavailable", "other_error"]
        lines = [
            "| server | extra attempts | served | closed | reset | timed out (in connect) | refused | time to outcome p50 / p99 / max ms (refused ones; control: all) | timed-out share | accept queue max | held OK | health served | recovery ms |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        summary = {}
        for s in ("atoll-retry0", "atoll-retry5", "blocking-retry5", "asio-control"):
            runs = by.get(s, [])
            if not runs:
                continue
            tot = {o: sum(get(r, "extra_clients", o) or 0 for r in runs) for o in outcomes}
            attempts = sum(get(r, "extra_clients", "attempts") or 0 for r in runs)
            in_connect = sum(get(r, "extra_clients", "timed_out_connecting") or 0 for r in runs)
            which = "all" if s == "asio-control" else "rejected"
            rej = [get(r, "extra_clients", "time_to_outcome_ms", which) for r in runs]
            rej = [x for x in rej if x]
            rej_p50 = median([x["p50"] for x in rej])
            rej_p99 = median([x["p99"] for x in rej])
            rej_max = max([x["max"] for x in rej]) if rej else None
            qmax = max(get(r, "accept_queue", "max") or 0 for r in runs)
            held_ok = min(get(r, "held", "ok") or 0 for r in runs)
            held_req = max(get(r, "held", "requested") or 0 for r in runs)
            h_served = sum(get(r, "health", "served") or 0 for r in runs)
            h_all = sum(get(r, "health", "attempts") or 0 for r in runs)
            rec = [get(r, "recovery", "recovery_ms") for r in runs]
            rec_ok = all(get(r, "recovery", "recovered") for r in runs)
            rec_med = median([x for x in rec if x is not None and x >= 0])
            rec_max = max([x for x in rec if x is not None] or [0])
            summary[s] = dict(
                tot=tot, attempts=attempts, rej_p99=rej_p99, qmax=qmax, held_ok=held_ok,
                held_req=held_req, h_served=h_served, h_all=h_all, rec_ok=rec_ok, rec_max=rec_max,
            )
            timed_share = 100.0 * tot["timed_out"] / attempts if attempts else 0
            rej_text = f"{fmt(rej_p50)} / {fmt(rej_p99)} / {fmt(rej_max)}" if rej else "n/a"
            lines.append(
                f"| {names[s]} | {attempts} | {tot['served']} | {tot['closed_by_server']} | {tot['reset']} | {tot['timed_out']} ({in_connect}) | {tot['refused']} | {rej_text} | {timed_share:.1f} % | {qmax} | {held_ok}/{held_req} | {h_served}/{h_all} | {fmt(rec_med)} (max {fmt(rec_max)}) |"
            )
        a = summary.get("atoll-retry0")
        ctl = summary.get("asio-control")
        ctl_text = f" (control, bare Asio serving every client: p99 {fmt(ctl['rej_p99'])} ms)" if ctl else ""
        if a:
            self.targets += [
                ("overload retry 0: 0 timeouts", str(a["tot"]["timed_out"]), verdict(a["tot"]["timed_out"] == 0)),
                ("overload retry 0: rejected clients closed p99 ≤ 1 ms", f"{fmt(a['rej_p99'])} ms{ctl_text}",
                 verdict(a["rej_p99"] is not None and a["rej_p99"] <= 1.0)),
                ("overload retry 0: accept queue ≤ 2", f"max {a['qmax']}" + (f" (control: max {ctl['qmax']})" if ctl else ""), verdict(a["qmax"] <= 2)),
                ("overload retry 0: held connections all answered", f"{a['held_ok']}/{a['held_req']}",
                 verdict(a["held_ok"] == a["held_req"])),
                ("overload retry 0: health probes 100 % served", f"{a['h_served']}/{a['h_all']}",
                 verdict(a["h_all"] > 0 and a["h_served"] == a["h_all"])),
                ("overload retry 0: recovery ≤ 5 ms", f"max {fmt(a['rec_max'])} ms",
                 verdict(a["rec_ok"] and a["rec_max"] <= 5)),
            ]
        b = summary.get("atoll-retry5")
        if b:
            self.targets.append(
                ("overload retry 5: 0 timeouts (admitted on release or closed by the deadline)",
                 str(b["tot"]["timed_out"]), verdict(b["tot"]["timed_out"] == 0))
            )
        c = summary.get("blocking-retry5")
        if c:
            self.targets.append(
                ("blocking-retry baseline shows the hangs (reference, not a target)",
                 f"{c['tot']['timed_out']} of {c['attempts']} timed out, accept queue max {c['qmax']}",
                 "shown" if c["tot"]["timed_out"] > 0 else "not reproduced"))
        # CDF plot: every round of every configuration.
        series = []
        colours = {"atoll-retry0": "#1f77b4", "atoll-retry5": "#2ca02c", "blocking-retry5": "#d62728",
                   "asio-control": "#999999"}
        for s in ("atoll-retry0", "atoll-retry5", "blocking-retry5", "asio-control"):
            for i, r in enumerate(by.get(s, [])):
                cdf = get(r, "extra_clients", "cdf_ms") or []
                if not cdf:
                    continue
                dat = os.path.join(self.dir, f"tto_{s}_{i}.dat")
                with open(dat, "w") as f:
                    for p, v in cdf:
                        f.write(f"{max(v, 0.001):.6g} {p}\n")
                title = f'title "{names[s]}"' if i == 0 else "notitle"
                series.append(f"'{dat}' using 1:2 with linespoints lw 2 pt 7 ps 0.5 lc rgb \"{colours[s]}\" {title}")
        if series:
            self.plot(
                "overload_time_to_outcome.png",
                """
set title "At the limit: time to outcome of extra clients (CDF; every round)"
set xlabel "time from connect() to outcome, ms (log scale; 1500 = client timeout)"
set ylabel "percentile of attempts"
set logscale x
set xrange [0.01:3000]
set yrange [0:100]
set key below
set grid
plot """ + ", \\\n     ".join(series) + "\n",
            )
        return lines

    # ---- attacks ------------------------------------------------------------------------
    def attack_rows(self, records):
        """The attack table's rows: medians over rounds, one row per scenario."""
        by = {}
        for rec in records:
            by.setdefault(rec["result"]["scenario"], []).append(rec["result"])
        lines = [
            "| scenario | server | attackers | client p50 / p99 ms, no attack | client p50 / p99 ms, "
            "during the attack | unanswered at the end | server CPU % during | server CPU s per MiB "
            "of attack input | attack input MiB/s | RSS growth per attacker | attackers closed by "
            "the server | server alive |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in ATTACK_SCENARIOS:
            runs = by.get(name)
            if not runs:
                continue
            ms = lambda phase, p: median([get(r, "client", phase, p) for r in runs])
            to_ms = lambda v: None if v is None else v / 1000
            consumed = median([get(r, "attack", "consumed_bytes") for r in runs])
            per_mib = median([get(r, "server", "cpu_s_per_mib") for r in runs])
            # A few KiB of input (slow-loris) makes "per MiB" meaningless.
            per_mib_text = fmt(per_mib) if consumed and consumed >= 64 * 1024 else "n/a (tiny input)"
            rss = median([get(r, "server", "rss_delta_per_attacker_bytes") for r in runs])
            alive = all(get(r, "server", "alive") is not False for r in runs)
            lost = sum(1 for r in runs if get(r, "client", "lost"))
            lines.append(
                f"| {name} | {ATTACK_SCENARIOS[name]} | {runs[0].get('attackers')} | "
                f"{fmt(to_ms(ms('baseline_us', 'p50')))} / {fmt(to_ms(ms('baseline_us', 'p99')))} | "
                f"{fmt(to_ms(ms('attack_us', 'p50')))} / **{fmt(to_ms(ms('attack_us', 'p99')))}** | "
                f"{fmt(median([get(r, 'client', 'unanswered') for r in runs]))}"
                + (f" (client lost in {lost} of {len(runs)})" if lost else "") + " | "
                f"{fmt(median([get(r, 'server', 'attack_cpu_pct') for r in runs]))} | {per_mib_text} | "
                f"{fmt(median([get(r, 'attack', 'consumed_mib_per_s') for r in runs]))} | "
                f"{fmt_bytes(rss)} | "
                f"{fmt(median([get(r, 'attack', 'closed_by_server') for r in runs]))} | "
                f"{'yes' if alive else '**no**'} |")
        return lines

    def attack_section(self):
        doc = ["## Attacks", ""]
        w = doc.append
        w("`atoll-load attack --scenario NAME --duration S` (issue 9): one well-behaved client "
          "sends a 64 B request every 1 ms on its own connection (echo, WebSocket binary frame, "
          "or HTTP GET, as the server speaks) and times each reply, first for S seconds without "
          "attack, then for S seconds while the attackers run. Every server runs one io thread, "
          "so the client shares the thread the attack loads. The client paces its requests "
          "(open loop) so that a stall counts for every request it delays; requests still "
          "unanswered when a phase ends count with their age then. Server CPU %: exact on-CPU "
          "time over the attack, all of it (the client's own requests, ~10 % of a CPU at 1 kHz "
          "with a wake-up each, included). CPU s per MiB: that time less what the client's "
          "requests cost in the baseline, per MiB of attack input the server took in (written by the attackers, less what was still "
          "in kernel buffers at the end). RSS growth: peak VmRSS during the attack minus VmRSS "
          "before it, per attacking connection. Medians over rounds.")
        w("")
        w("| scenario | what the attackers do |")
        w("|---|---|")
        for name, what in ATTACK_WHAT.items():
            w(f"| {name} | {what} |")
        w("")
        if self.attack:
            e = self.env
            w(f"This run: commit {e.get('commit')}, {e.get('date')}, `{e.get('command')}`, "
              f"{e.get('attack_rounds', '?')} round(s) of {e.get('attack_s', '?')} s per phase"
              + (f"; load average {e.get('loadavg_start')} at the start, CPUs "
                 f"{e.get('cpu_busy_before_pct')} % busy before measuring" if e.get("loadavg_start") else "")
              + ".")
            w("")
            doc += self.attack_rows(self.attack)
            w("")
        else:
            w("Not part of this run (no `attack.jsonl`).")
            w("")
        before_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attacks-before")
        before = load_lines(os.path.join(before_dir, "attack.jsonl"))
        if before:
            env = {}
            with open(os.path.join(before_dir, "machine.env")) as f:
                for line in f:
                    if "=" in line:
                        k, v = line.rstrip("\n").split("=", 1)
                        env[k] = v
            w(f"**Before the fixes, commit {env.get('commit')}** (the reference kept in "
              f"`bench/attacks-before/`): {env.get('date')}, `{env.get('command')}`, "
              f"{env.get('attack_rounds', '?')} round(s) of {env.get('attack_s', '?')} s per phase"
              + (f"; load average {env.get('loadavg_start')} at the start, CPUs "
                 f"{env.get('cpu_busy_before_pct')} % busy before measuring" if env.get("loadavg_start") else "")
              + ".")
            w("")
            doc += self.attack_rows(before)
            w("")
            if env.get("note"):
                w(f"Note: {env['note']}")
                w("")
        return doc

    # ---- micro --------------------------------------------------------------------------
    def micro_table(self):
        if not self.micro:
            return ["(not run)"]
        lines = ["| benchmark | time ns | CPU ns | items/s |", "|---|---:|---:|---:|"]
        for b in self.micro.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue
            ips = b.get("items_per_second")
            lines.append(
                f"| `{b['name']}` | {b['real_time']:.1f} | {b['cpu_time']:.1f} | {fmt(ips) if ips else ''} |"
            )
        return lines

    # ---- plots --------------------------------------------------------------------------
    def plot(self, name, script):
        if not self.gnuplot:
            return
        os.makedirs(self.plots, exist_ok=True)
        out = os.path.join(self.plots, name)
        full = f'set terminal pngcairo size 900,560 font "sans,10"\nset output "{out}"\n' + script
        gp = os.path.join(self.dir, name + ".gp")
        with open(gp, "w") as f:
            f.write(full)
        res = subprocess.run([self.gnuplot, gp], capture_output=True, text=True)
        if res.returncode == 0:
            self.plot_files.append(name)
        else:
            sys.stderr.write(f"report.py: gnuplot failed for {name}: {res.stderr}\n")

    def headline(self):
        parts = []
        if getattr(self, "echo_ratios", None):
            cs = sorted(self.echo_ratios)
            parts.append(
                "Echo 64 B against bare Asio at "
                + "/".join(str(c) for c in cs)
                + " connections: msgs/s "
                + "/".join(f"{fmt(self.echo_ratios[c]['msgs'])}×" for c in cs)
                + ", server CPU per message (exact total) "
                + "/".join(f"{fmt(self.echo_ratios[c]['cpu'])}×" for c in cs)
                + "."
            )
        if getattr(self, "echo_epoll", None):
            cs = sorted({c for s, c in self.echo_epoll if s == "atoll"})
            parts.append(
                "Against the plain epoll server (the kernel's own cost): server CPU per message "
                "(exact total) "
                + "/".join(f"{fmt(self.echo_epoll[('atoll', c)]['cpu'])}×" for c in cs)
                + ", user CPU per message "
                + "/".join(f"{fmt(self.echo_epoll[('atoll', c)]['user'])}×" for c in cs)
                + (" (bare Asio: "
                   + "/".join(fmt(get(self.echo_epoll, ("asio", c), "cpu")) + "×" for c in cs)
                   + " total)" if all(("asio", c) in self.echo_epoll for c in cs) else "")
                + "."
            )
        if getattr(self, "ws_ratios", None):
            sizes = sorted(self.ws_ratios)
            parts.append(
                "WebSocket echo at " + "/".join(f"{s:,} B" for s in sizes) + ", 50 connections: "
                + "server CPU per message (exact total) "
                + "/".join(f"{fmt(self.ws_ratios[s]['cpu'])}×" for s in sizes)
                + " atoll's raw echo; msgs/s "
                + "/".join(f"{fmt(self.ws_ratios[s]['msgs'])}×" for s in sizes)
                + " Node `ws`."
            )
        if getattr(self, "tls_ratios", None):
            parts.append(
                f"TLS echo 1 KiB, 50 connections: msgs/s {fmt(self.tls_ratios['msgs'])}×, server "
                f"CPU per message {fmt(self.tls_ratios['cpu'])}× bare Asio `ssl::stream`.")
        for t, m, v in self.targets:
            if t.startswith("churn"):
                parts.append(f"Churn: {m} the connections/s of bare Asio.")
            if t.startswith("idle:"):
                parts.append(f"Idle: {m} of server RSS per connection at 10,000 (target 512 B).")
        missed = [t for t, m, v in self.targets if "missed" in v]
        met = [t for t, m, v in self.targets if v.startswith("met")]
        parts.append(f"{len(met)} of {len(met) + len(missed)} targets met"
                     + (f" (missed: {'; '.join(missed)})" if missed else "")
                     + ". Where the CPU goes and what would fix it: the profiling notes at the end.")
        return " ".join(parts)

    # ---- the document -------------------------------------------------------------------
    def write(self, out_path):
        e = self.env
        echo_lines, echo_ratio_lines, conns = self.echo_table()
        self.echo_plots(conns)
        ws_lines, ws_ratio_lines = self.ws_table()
        tls_lines = self.tls_section()
        churn_lines = self.churn_table()
        idle_lines = self.idle_table()
        overload_lines = self.overload_table()
        attack_lines = self.attack_section()
        micro_lines = self.micro_table()

        doc = []
        w = doc.append

        def figure(name):  # the plot, if gnuplot made it
            if name in self.plot_files:
                w(f"![{name}]({self.rel_plots}/{name})")
                w("")

        w("# atoll benchmark results")
        w("")
        w("Generated by `bench/run` (raw JSON lines: `build/bench/results/`, not committed). "
          "Ratios are atoll / bare Asio (`bench/baseline/echo_server.cpp`) and, for echo, atoll "
          "and bare Asio / a plain epoll server (`bench/baseline/epoll_echo.cpp`), measured side "
          "by side "
          "in one run, servers alternating A B A B with a fresh server process per run; figures "
          "are medians over rounds.")
        w("")
        if self.provisional():
            reasons = []
            if e.get("quick") == "1":
                reasons.append("a `--quick` run (fewer rounds, shorter windows)")
            load = float(e.get("loadavg_start", e.get("loadavg_before", "0")) or 0)
            busy = float(e.get("cpu_busy_before_pct", "0") or 0)
            if load > 0.5 or busy > 10:
                reasons.append(f"the machine was busy with other work (load average {load} at "
                               f"the start, CPUs {busy:.0f} % busy before measuring)")
            w(f"> **Provisional:** {' and '.join(reasons)}. Ratios of adjacent runs are more "
              "trustworthy than absolute numbers.")
            w("")
        w("| | |")
        w("|---|---|")
        w(f"| date | {e.get('date')} |")
        w(f"| machine | {e.get('nproc')} CPUs, {e.get('model')}, Linux {e.get('kernel')} |")
        w(f"| compiler | {e.get('compiler')} (Release, -O3) |")
        w(f"| commit | {e.get('commit')} |")
        w(f"| command | `{e.get('command')}` |")
        w(f"| duration | {e.get('duration_s')} s |")
        w(f"| pinning | {e.get('pinning')}; every server runs 1 io thread |")
        w(f"| rounds | {e.get('rounds')} (overload: see below); measured window {e.get('window_s')} s after {e.get('warmup_s')} s warm-up |")
        w(f"| quiet? | load average {e.get('loadavg_start', '?')} at start (before the build), "
          f"{e.get('loadavg_before')} after the build, {e.get('loadavg_after')} at the end; "
          + (f"CPUs {e['cpu_busy_before_pct']} % busy just before measuring |"
             if "cpu_busy_before_pct" in e else "CPU use just before measuring not recorded |"))
        w("")
        if e.get("note"):
            w(f"Note: {e['note']}")
            w("")
        headline = self.headline()
        if headline:
            w("**Headline.** " + headline)
            w("")
        w("## Targets (issues #4 and #10)")
        w("")
        w("| target | measured | |")
        w("|---|---|---|")
        for t, m, v in self.targets:
            w(f"| {t} | {m} | {v} |")
        w("")
        w("## Echo, 64 B ping-pong")
        w("")
        w("`atoll-load echo -c C --size 64 --inflight 1` against `atoll-echo --threads 1` (atoll's "
          "defaults: 60 s read timeout, TCP_NODELAY, backpressure handling) and `bare-asio-echo "
          "--threads 1` (async_read_some into a 4 KiB buffer per connection, async_write) and "
          "`epoll-echo --threads 1` (`bench/baseline/epoll_echo.cpp`: edge-triggered epoll, each "
          "connection registered once, recv into one 64 KiB buffer per thread, send back; the "
          "kernel's own cost), alternating A B C in every round. On a "
          "2-CPU machine both sides saturate the box, so **server CPU per message** (from "
          "/proc/PID/stat over the measured window: user/system in 10 ms ticks; the exact total from "
          "/proc/PID/task/*/schedstat) is the sharp figure, "
          "msgs/s the sanity check.")
        w("")
        doc += echo_lines
        w("")
        doc += echo_ratio_lines
        w("")
        for p in ("echo_throughput.png", "echo_cpu_per_msg.png"):
            figure(p)
        w("## WebSocket echo")
        w("")
        if self.ws:
            node = e.get("node", "none")
            node_text = (f"Node {node} with `ws` {e.get('node_ws')}" if node != "none"
                         else "Node `ws`: not run (node/npm missing)")
            w("`atoll-load ws-echo -c 50 --size S --inflight 1` (one HTTP upgrade per connection, "
              "then ping-pong of masked binary frames of S payload bytes; the reply is the "
              "server's unmasked frame) against `atoll-ws-echo --threads 1` and against "
              f"`bench/baseline/ws_echo_node.mjs` ({node_text}: a `WebSocketServer` whose "
              "`message` handler sends the data back), and `atoll-load echo` with the same S "
              "against `atoll-echo --threads 1`: what the same bytes cost atoll without "
              "WebSocket. The three alternate A B C in every round, a fresh server per run, "
              "each pinned to one CPU (Node's helper threads included). **Compression is off "
              "on both sides:** `atoll-ws-echo` runs without `--deflate`, the Node server with "
              "`perMessageDeflate: false`, and atoll-load's upgrade request offers no "
              "extension (it refuses a 101 that names one), so every frame carries the "
              "payload as is. Both servers set TCP_NODELAY (atoll by default, `ws` on every "
              "socket).")
            w("")
            doc += ws_lines
            w("")
            doc += ws_ratio_lines
            w("")
            figure("ws_echo_throughput.png")
        else:
            w("Not part of this run (no `ws.jsonl`: `atoll-ws-echo` was not built, or the run "
              "predates the WebSocket rows).")
            w("")
        doc += tls_lines
        w("## Churn")
        w("")
        w("`atoll-load churn -c 8 --src-ips 16`: 8 lanes of connect → 1-byte echo → close.")
        w("")
        doc += churn_lines
        w("")
        w("## Idle connections")
        w("")
        w("`atoll-load idle -c 10000 --src-ips 16`: 10,000 connections, each verified with a "
          "1-byte echo, then held; server VmRSS before opening them and while holding them.")
        w("")
        doc += idle_lines
        w("")
        figure("idle_rss.png")
        w("## At the connection limit (overload)")
        w("")
        w(f"Limit 100; `atoll-load overload --held 100 --extra 4000 --rate 500 --attempt-timeout-ms "
          f"1500 --duration {e.get('overload_s')}`, {e.get('overload_rounds')} round(s) per server: "
          "100 held connections (verified by echo, checked every 250 ms), then 500 extra "
          "clients/s, each connect → 1 byte → wait for the echo or a close (at most 4000 in "
          "flight, 1.5 s client timeout), a health probe every 100 ms on the health port, the "
          "listen socket's accept queue sampled every 5 ms (sock_diag, what `ss -ltn` shows as "
          "Recv-Q); then the held connections are closed and the time to the first served "
          "client is the recovery. Servers: `atoll-echo --max-connections 100 --retry-count 0`; "
          "`atoll-echo ... --retry-count 5 --retry-wait-ms 200` (waiting room, deadline 1 s); "
          "`blocking-retry-echo --max-connections 100 --retry-count 5 --retry-wait-ms 200 "
          "--acceptors 100`: Thousand Island's default mechanism (100 acceptors, each sleeping "
          "`retry_wait` up to `retry_count` times while holding the accepted socket) with the "
          "wait scaled from 1 s to 200 ms so that a run takes seconds; the client timeout is "
          "scaled alike (1.5 s: longer than atoll's 1 s waiting-room deadline, shorter than the "
          "load phase). Counts are summed over rounds; closed or reset = refused by the server; "
          "\"in connect\" = the TCP handshake never completed (SYN dropped: accept queue full).")
        w("")
        doc += overload_lines
        w("")
        figure("overload_time_to_outcome.png")
        doc += attack_lines
        w("## Micro-benchmarks")
        w("")
        w("`bench_core` (Google Benchmark), not pinned (the 2-thread supervisor case runs on "
          "both CPUs). `dispatch_echo_*`: one 64-byte "
          "message through the server side of a socketpair, driven in one thread (no wake-ups): "
          "atoll's path (readiness, recv into the thread's buffer, on_data, direct send) against "
          "Asio's async_read_some/async_write loop and against `dispatch_echo_epoll_floor`, a bare "
          "edge-triggered epoll loop registered once (epoll_wait + recv + send): the floor an io "
          "thread owning its epoll set could reach. The times include the client side's send and "
          "recv, the same for all three.")
        w("")
        doc += micro_lines
        w("")
        profile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile.md")
        if os.path.exists(profile):
            with open(profile) as f:
                doc.append(f.read().rstrip())
            w("")
        with open(out_path, "w") as f:
            f.write("\n".join(doc) + "\n")


# The sections bench/run --only rewrites on their own: flag -> (method, heading, the heading
# a new section goes before).
ONLY_SECTIONS = {
    "--attacks-only": (report.attack_section, "## Attacks", "## Micro-benchmarks"),
    "--tls-only": (report.tls_section, "## TLS", "## Churn"),
}


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ONLY_SECTIONS:
        make, heading, before = ONLY_SECTIONS[sys.argv[1]]
        results_dir, out_md = sys.argv[2:]
        section = make(report(results_dir, None, None))
        if os.path.exists(out_md):
            with open(out_md) as f:
                text = f.read()
        else:
            text = "# atoll benchmark results\n\n"
        with open(out_md, "w") as f:
            f.write(replace_section(text, heading, section, before))
        return 0
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    results_dir, out_md, plots_dir = sys.argv[1:]
    rel = os.path.relpath(plots_dir, os.path.dirname(os.path.abspath(out_md)))
    report(results_dir, plots_dir, rel).write(out_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
