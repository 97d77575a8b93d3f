#!/bin/sh
# Runs a Node interop test for ctest (tests/interop/CMakeLists.txt).
#
#   run_node.sh install PREFIX               npm install ws@8 into PREFIX/node_modules, unless
#                                            it is there already (the ctest fixture node_ws)
#   run_node.sh test PREFIX SCRIPT ARGS...   node SCRIPT --node-modules PREFIX/node_modules ARGS...
#
# Exits 77 (ctest: skipped) when node or npm is not installed; scripts/setup-deps installs them.
set -eu
mode=$1
prefix=$2
shift 2
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: skipped (scripts/setup-deps installs nodejs and npm)"
  exit 77
fi
case "$mode" in
  install)
    if [ -f "$prefix/node_modules/ws/package.json" ]; then
      echo "ws already in $prefix/node_modules"
      exit 0
    fi
    mkdir -p "$prefix"
    exec npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error ws@8
    ;;
  test)
    script=$1
    shift
    exec node "$script" --node-modules "$prefix/node_modules" "$@"
    ;;
  *)
    echo "run_node.sh: unknown mode '$mode'" >&2
    exit 2
    ;;
esac
