#!/usr/bin/env python3
"""Medians of run_readiness.sh's JSON lines: msgs/s and server CPU per message (user, sys,
on-CPU), each as a ratio against epoll-echo in the same round, then the median over rounds.

    bench/experiments/summarize_readiness.py [/tmp/readiness.jsonl]
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/readiness.jsonl")]
by = {(r["round"], r["server"], r["conns"]): r["load"] for r in rows}
servers = list(dict.fromkeys(r["server"] for r in rows))
levels = sorted({r["conns"] for r in rows})
rounds = sorted({r["round"] for r in rows})


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


print("| server | conns | msgs/s | vs epoll | user µs/msg | vs epoll | sys µs/msg | vs epoll "
      "| on-CPU µs/msg | vs epoll |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in levels:
    for s in servers:
        vals = defaultdict(list)
        for r in rounds:
            x, e = by.get((r, s, c)), by.get((r, "epoll", c))
            if not x or not e or not x.get("msgs"):
                continue
            xs, es = x["server"], e["server"]
            vals["mps"].append(x["msgs_per_s"])
            vals["mps_r"].append(x["msgs_per_s"] / e["msgs_per_s"])
            for k in ("user_us_per_msg", "sys_us_per_msg", "on_cpu_us_per_msg"):
                vals[k].append(xs[k])
                vals[k + "_r"].append(xs[k] / es[k] if es[k] else None)
        if not vals:
            continue
        print(f"| {s} | {c} | {med(vals['mps']):,.0f} | {med(vals['mps_r']):.2f} "
              f"| {med(vals['user_us_per_msg']):.3f} | {med(vals['user_us_per_msg_r']):.2f} "
              f"| {med(vals['sys_us_per_msg']):.3f} | {med(vals['sys_us_per_msg_r']):.2f} "
              f"| {med(vals['on_cpu_us_per_msg']):.3f} | {med(vals['on_cpu_us_per_msg_r']):.2f} |")
