#!/bin/bash
# tests/fuzz/run.sh [SECONDS] [smoke] - build and run the libFuzzer targets.
#
#   run.sh smoke        every target over its seed corpus (tests/fuzz/corpus/<t>,
#                       regression seeds crash-* included), then 10 s of fuzzing
#                       each: for `make check`
#   run.sh 600          600 s of fuzzing per target (`make fuzz`)
#   run.sh 30 smoke     seeds, then 30 s each
#
# Targets are built with clang -fsanitize=fuzzer,address,undefined into
# build/fuzz/ from the src/*.c files they need (and the protobuf code that
# `make build/gen/sparkplug_b.pb-c.c` generates). New corpus entries go to
# build/fuzz/corpus/<t>/ (the seed directories are only read); crashes go to
# build/fuzz/artifacts/<t>/. Exit status: 0 when no target failed.
# Environment: TARGETS="codec spb" to run a subset; CC (default clang);
# FUZZ_ARGS extra libFuzzer flags (e.g. "-fork=1 -ignore_crashes=1" to go on
# after a crash); NICE (default 10) for the fuzzing runs; FUZZ_TOLERATE_KNOWN=1
# lets the bugs reported in issue #10 pass in fuzz_spb/fuzz_codec, so that a
# long run hunts for new ones (their regression seeds still fail in smoke).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
SECONDS_EACH=60
SMOKE=0
for a in "$@"; do
    case "$a" in
    smoke) SMOKE=1; SECONDS_EACH=10 ;;
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [smoke]" >&2; exit 2 ;;
    *) SECONDS_EACH=$a ;;
    esac
done
# "run.sh 30 smoke": the number wins over smoke's default
if [ $# -ge 2 ]; then
    for a in "$@"; do case "$a" in [0-9]*) SECONDS_EACH=$a ;; esac; done
fi

CC=${CC:-clang}
NICE=${NICE:-10}
OUT=$ROOT/build/fuzz
GEN=$ROOT/build/gen/sparkplug_b.pb-c.c
TARGETS=${TARGETS:-config setpoint control codec spb}

command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

# the src/ modules each target links
declare -A DEPS=(
    [config]="config codec plan"
    [setpoint]="setpoint codec"
    [control]="control codec setpoint config plan log payload sample"
    [codec]="codec"
    [spb]="spb codec setpoint"
)
# a bigger max_len where the input is a file or a request stream
declare -A MAXLEN=( [config]=4096 [setpoint]=5000 [control]=16384 [codec]=600 [spb]=8192 )
declare -A DICT=( [config]=config.dict [setpoint]=json.dict [control]=json.dict [codec]= [spb]= )

PKGS="libconfig jansson libprotobuf-c"
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CPP="-D_GNU_SOURCE -DMBGATE_VERSION=\"fuzz\" -I$ROOT/src -I$ROOT/build/gen $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lm -pthread"

build() { # target
    local t=$1 srcs=() m
    for m in ${DEPS[$t]}; do srcs+=("$ROOT/src/$m.c"); done
    if [ "$t" = spb ]; then
        if [ ! -f "$GEN" ]; then
            make -C "$ROOT" -s build/gen/sparkplug_b.pb-c.c >&2 || return 1
        fi
        srcs+=("$GEN")
    fi
    mkdir -p "$OUT"
    local bin=$OUT/fuzz_$t
    # rebuild when any source is newer than the binary
    local need=0 f
    [ -x "$bin" ] || need=1
    for f in "$ROOT/tests/fuzz/fuzz_$t.c" "${srcs[@]}" "$ROOT"/src/*.h; do
        [ "$f" -nt "$bin" ] && need=1
    done
    [ $need = 0 ] && return 0
    echo "== build $bin" >&2
    # shellcheck disable=SC2086
    "$CC" -std=gnu11 -g -O1 -pthread $SAN $CPP -w -o "$bin.tmp" \
        "$ROOT/tests/fuzz/fuzz_$t.c" "${srcs[@]}" $LIBS || return 1
    mv "$bin.tmp" "$bin"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in $TARGETS; do
    if ! build "$t"; then
        echo "fuzz: build of fuzz_$t failed" >&2
        failed+=("$t:build")
        continue
    fi
    bin=$OUT/fuzz_$t
    seeds=$ROOT/tests/fuzz/corpus/$t
    work=$OUT/corpus/$t
    art=$OUT/artifacts/$t
    mkdir -p "$work" "$art"
    dict=()
    [ -n "${DICT[$t]}" ] && dict=(-dict="$ROOT/tests/fuzz/${DICT[$t]}")
    common=(-max_len="${MAXLEN[$t]}" -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$art/" "${dict[@]}")

    if [ $SMOKE = 1 ]; then
        echo "== fuzz_$t: seed corpus ($(ls "$seeds" | wc -l) inputs)"
        # one process per seed, so every regression seed is tried and named
        if ! "$bin" -runs=0 "${common[@]}" "$seeds" > "$OUT/$t.seeds.log" 2>&1; then
            echo "FAIL fuzz_$t: a seed input fails; log $OUT/$t.seeds.log"
            grep -E 'ERROR|SUMMARY|^ +#[0-9] .*(src|tests)/' "$OUT/$t.seeds.log" | head -n 20
            # name the regression seeds that fail
            for f in "$seeds"/crash-* "$seeds"/leak-* "$seeds"/timeout-*; do
                [ -f "$f" ] || continue
                if ! "$bin" "${common[@]}" "$f" > "$OUT/$t.seed.out" 2>&1; then
                    # the target's own message, else the sanitizer's
                    why=$(grep -m1 -vE '(Running|^INFO|NOTE|MS:|SUMMARY|==|base unit|artifact_prefix|Base64|Executed|^ +#|^\s*$)' "$OUT/$t.seed.out")
                    echo "  fails: $f"
                    echo "         ${why:-$(grep -m1 -E 'ERROR|runtime error' "$OUT/$t.seed.out")}"
                fi
            done
            failed+=("$t:seeds")
            continue
        fi
        work=$(mktemp -d "$OUT/smoke-$t.XXXXXX")
    fi
    # Fuzzing starts from the seeds without the regression seeds (crash-*,
    # ...): those are for smoke; an open bug would end the run at once.
    for f in "$seeds"/*; do
        case "$(basename "$f")" in crash-*|leak-*|timeout-*|oom-*) continue ;; esac
        cp -p "$f" "$work/seed-$(basename "$f")"
    done
    echo "== fuzz_$t: ${SECONDS_EACH}s"
    # shellcheck disable=SC2086
    nice -n "$NICE" "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        "${common[@]}" ${FUZZ_ARGS:-} "$work" > "$OUT/$t.log" 2>&1
    rc=$?
    [ $SMOKE = 1 ] && rm -rf "$work"
    grep -E '^(stat::|Done|#[0-9]+.*DONE)' "$OUT/$t.log" | tr '\n' ' '; echo
    if [ $rc != 0 ]; then
        echo "FAIL fuzz_$t (exit $rc); log $OUT/$t.log; inputs:"
        ls -1 "$art"
        tail -n 60 "$OUT/$t.log"
        echo "keep the input as a regression seed: cp $art/<file> tests/fuzz/corpus/$t/crash-<what>"
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: all targets passed (${TARGETS})"
