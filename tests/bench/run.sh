#!/bin/bash
# make bench -> here. Builds the bench's C helpers into build/bench/ and runs
# tests/bench/bench.py, which prints one table and writes build/bench/results.md
# (every run in build/bench/results.json, logs in build/bench/run/).
# Loopback only, bounded runs, every process stopped by its PID.
# Knobs: see tests/bench/README.md (BENCH_REPS, BENCH_QUICK=1, BENCH_SKIP=...).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
OUT=build/bench
CC=${CC:-cc}
mkdir -p "$OUT"
export MBGATE_BIN=${MBGATE_BIN:-$PWD/$B/mbgate}
[ -x "$MBGATE_BIN" ] || { echo "bench: $MBGATE_BIN missing: run make first" >&2; exit 1; }
for o in store sample log; do
  [ -f "$B/obj/$o.o" ] || { echo "bench: $B/obj/$o.o missing: run make first" >&2; exit 1; }
done
CF="-O2 -g -Wall -Wextra -std=gnu11"
$CC $CF -o "$OUT/countsub" tests/bench/countsub.c -lmosquitto
$CC $CF -o "$OUT/pubbench" tests/bench/pubbench.c -lmosquitto
# store_put as the agent runs it: the agent's own objects
$CC $CF -D_GNU_SOURCE -Isrc -o "$OUT/storebench" tests/bench/storebench.c \
  "$B/obj/store.o" "$B/obj/sample.o" "$B/obj/log.o" -lsqlite3 -pthread
exec /usr/bin/python3 tests/bench/bench.py "$@"
