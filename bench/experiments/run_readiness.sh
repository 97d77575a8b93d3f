#!/usr/bin/env bash
# Runs the readiness-loop comparison of bench/profile.md ("Readiness loop: epoll set under Asio
# vs io_uring"): 64 B ping-pong at 1, 50 and 500 connections against epoll-echo, the nested
# design, io_uring (standalone and under Asio), bare Asio and atoll-echo, alternating the
# servers in every round; server pinned to CPU 1, atoll-load to CPU 0 (as bench/run does).
#
#   bench/experiments/run_readiness.sh [ROUNDS] [WINDOW_S]    (defaults 3 and 4)
#
# Needs build/bench configured as in bench/README.md with targets atoll-load, bare-asio-echo,
# epoll-echo, atoll-echo, and build/bench/bench/{nested-epoll-echo,uring-echo} built by hand
# (see each file's header). Writes JSON lines to $OUT (default /tmp/readiness.jsonl);
# bench/experiments/summarize_readiness.py turns them into the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
b=build/bench/bench
rounds=${1:-3}
window=${2:-4}
out=${OUT:-/tmp/readiness.jsonl}
: >"$out"
priority=()
if ((EUID == 0)); then
  priority=(setsid sh -c 'echo -10 >/proc/self/autogroup 2>/dev/null; exec "$@"' sh nice -n -10)
fi
servers=(epoll nested uring uring-asio uring-poll asio atoll)
port_of() { case $1 in epoll) echo 4161 ;; nested) echo 4162 ;; uring) echo 4163 ;;
  uring-asio) echo 4164 ;; uring-poll) echo 4165 ;; asio) echo 4166 ;; atoll) echo 4167 ;; esac; }
cmd_of() {
  local p; p=$(port_of "$1")
  case $1 in
    epoll) echo "$b/epoll-echo --port $p --threads 1" ;;
    nested) echo "$b/nested-epoll-echo --port $p --threads 1" ;;
    uring) echo "$b/uring-echo --port $p --threads 1" ;;
    uring-asio) echo "$b/uring-echo --port $p --threads 1 --asio" ;;
    uring-poll) echo "$b/uring-echo --port $p --threads 1 --io poll" ;;
    asio) echo "$b/bare-asio-echo --port $p --threads 1" ;;
    atoll) echo "build/bench/examples/echo/atoll-echo --port $p --threads 1" ;;
  esac
}
for round in $(seq "$rounds"); do
  for conns in 1 50 500; do
    for s in "${servers[@]}"; do
      # shellcheck disable=SC2046
      "${priority[@]}" taskset -c 1 $(cmd_of "$s") >/dev/null 2>&1 &
      pid=$!
      for _ in $(seq 100); do
        ss -ltn "sport = :$(port_of "$s")" | grep -q LISTEN && break
        sleep 0.05
      done
      line=$("${priority[@]}" taskset -c 0 "$b/atoll-load" echo --port "$(port_of "$s")" \
        -c "$conns" --size 64 --duration "$window" --warmup 1 --no-progress --server-pid "$pid" \
        2>/dev/null | tail -1)
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
      echo "{\"round\":$round,\"server\":\"$s\",\"conns\":$conns,\"load\":$line}" >>"$out"
      echo "round $round $s c=$conns: $(grep -o '"msgs_per_s":[0-9.]*' <<<"$line")" >&2
    done
  done
done
