#!/usr/bin/env bash
# System calls per message for the readiness-loop comparison (bench/profile.md, issue 10
# item 2): each server runs under `strace -f -c` for its whole life, atoll-load drives 64 B
# ping-pong with no warm-up, and every call strace counted is divided by the messages
# atoll-load counted (connection set-up and shutdown included: a few hundred calls against
# ~10^5 messages). strace slows the server, so the batches per wakeup are larger than without
# it: read the wait calls per message as an upper bound of what they are at full speed at
# 500 connections, and a lower bound at 1.
#
#   bench/experiments/strace_readiness.sh [WINDOW_S]   (default 3; needs the binaries that
#   run_readiness.sh needs). Prints one line per server and level, then strace's table.
set -euo pipefail
cd "$(dirname "$0")/../.."
b=build/bench/bench
window=${1:-3}
port=4171
declare -A cmd=(
  [epoll]="$b/epoll-echo --threads 1"
  [nested]="$b/nested-epoll-echo --threads 1"
  [uring]="$b/uring-echo --threads 1"
  [uring-asio]="$b/uring-echo --threads 1 --asio"
  [uring-poll]="$b/uring-echo --threads 1 --io poll"
  [asio]="$b/bare-asio-echo --threads 1"
  [atoll]="build/bench/examples/echo/atoll-echo --threads 1"
)
for conns in 1 50 500; do
  for s in epoll nested uring uring-asio uring-poll asio atoll; do
    port=$((port + 1))
    # shellcheck disable=SC2086
    taskset -c 1 strace -f -c -o /tmp/strace-$s-$conns.txt ${cmd[$s]} --port $port >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.05; done
    msgs=$(taskset -c 0 "$b/atoll-load" echo --port $port -c "$conns" --size 64 \
      --duration "$window" --warmup 0 --no-progress 2>/dev/null | tail -1 |
      grep -o '"msgs":[0-9]*' | cut -d: -f2)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v s="$s" -v c="$conns" -v m="$msgs" '
      $1 ~ /^[0-9.]+$/ && NF >= 5 { name = $NF; calls = ($5 ~ /^[0-9]+$/) ? $4 : $4;
        n[name] = $4; total += $4 }
      END { printf "%-10s c=%-3s msgs=%-8s per msg: %.3f total", s, c, m, total / m;
        for (k in n) if (n[k] / m >= 0.005) printf "  %s %.3f", k, n[k] / m; printf "\n" }' \
      "/tmp/strace-$s-$conns.txt"
  done
done
