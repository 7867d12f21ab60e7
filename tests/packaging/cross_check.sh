#!/bin/bash
# tests/packaging/cross_check.sh [ARCH...] - the cross-built Debian packages
# (issue #12), end to end, on this (amd64) machine.
#
# Run by make cross-check, which first runs make deps ARCH=... for each
# architecture. Builds the native build/mbgate (make all) for `mbgate sim`,
# then for each ARCH (default: arm64 armhf, or $MBGATE_CROSS_ARCHS):
#   - cross-builds build/mbgate_<version>_<ARCH>.deb (packaging/build-deb.sh;
#     the architectures are built side by side);
#   - checks the package: its Architecture field, that /usr/bin/mbgate is an
#     ELF for ARCH (same class, machine and ABI flags as ARCH's libc), that
#     every library it links is in Depends (dpkg-shlibdeps on the multiarch
#     libraries) and that apt could install it (simulated), and lintian
#     --fail-on error,warning;
#   - smoke-tests it under qemu user emulation, called explicitly (binfmt_misc
#     need not be registered): the .deb is extracted (dpkg-deb -x) into a
#     temporary directory; there `mbgate --version`, `mbgate check -c` on the
#     shipped etc/mbgate/mbgate.conf, and a short run of the agent against a
#     private mosquitto and `mbgate sim` (both native) on free loopback ports:
#     3 samples must arrive on the tag topic, `mbgate status` must answer OK
#     through the control socket, the samples' timestamps and the status
#     JSON's times and counters must be plausible (32-bit armhf: time_t,
#     long and size_t widths), and SIGTERM must stop the agent cleanly.
#     The emulated binary loads ARCH's libraries from the multiarch
#     directories (/usr/lib/<triplet>, installed with the -dev packages) and
#     its dynamic loader from / (qemu -L /).
#
# Everything it starts is stopped by PID (trap); its temporary directory is
# removed unless something failed. Prints one line per check, the time each
# phase took, a PASS/FAIL line per architecture, and "N passed, N failed";
# exits non-zero on any failure.
#
# Environment: MBGATE_CROSS_ARCHS (default "arm64 armhf"); MBGATE_SIM_BIN,
# the native mbgate that runs `mbgate sim` (default build/mbgate, built with
# make when it is not given).
# shellcheck disable=SC2317  # functions called through check
set -u
export LC_ALL=C.UTF-8

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# -gt 0 ]; then ARCHS=("$@"); else read -r -a ARCHS <<<"${MBGATE_CROSS_ARCHS:-arm64 armhf}"; fi
BUILD_ARCH=$(dpkg-architecture -qDEB_BUILD_ARCH)
VERSION=$(sed -n 's/^VERSION[[:space:]]*[:?]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$ROOT/Makefile" | head -n 1)
WORK=$(mktemp -d /tmp/mbgate-cross-check.XXXXXX)
BG=()    # builds and lintian: process group leaders (setsid)
T0=$SECONDS
declare -A AFAIL=() TIMES=() DEBS=() CHECKED=()
# shellcheck source=tests/packaging/lib.sh
. "$ROOT/tests/packaging/lib.sh"
# A check named "ARCH: ..." counts against that architecture.
on_fail() { case $1 in *:*) AFAIL[${1%%:*}]=1 ;; esac; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # Builds or lints still running (interrupted): their whole process group.
    for pid in "${BG[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "$FAILED" -eq 0 ]; then rm -rf "$WORK"; fi
}

finish() {
    trap - EXIT INT TERM
    cleanup
    local a
    say ""
    say "== summary (mbgate $VERSION, built on $BUILD_ARCH)"
    for a in "${ARCHS[@]}"; do
        # PASS: every check of ARCH ran (up to lintian) and none failed.
        if [ -z "${AFAIL[$a]:-}" ] && [ -n "${CHECKED[$a]:-}" ]; then s=PASS; else s=FAIL; fi
        say "$(printf '%-8s %s   %s' "$a" "$s" "${DEBS[$a]:-no package}")"
    done
    for a in "${!TIMES[@]}"; do say "$(printf '  time %-24s %4d s' "$a" "${TIMES[$a]}")"; done | sort
    say "$(printf '  time %-24s %4d s' total $((SECONDS - T0)))"
    if [ "$FAILED" -eq 0 ]; then
        say "cross-check: PASS"
    else
        say "cross-check: FAIL (${FAILS[*]})"
        say "logs kept in $WORK"
    fi
    say "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && exit 0
    exit 1
}
trap finish EXIT
trap 'say "interrupted"; FAILED=$((FAILED + 1)); FAILS+=(interrupted); finish' INT TERM


# ---------------------------------------------------------------------------
say "== mbgate cross-built packages: ${ARCHS[*]} (build machine: $BUILD_ARCH)"
missing=
for t in dpkg-buildpackage:dpkg-dev dpkg-checkbuilddeps:dpkg-dev dh:debhelper \
         fakeroot:fakeroot lintian:lintian readelf:binutils mosquitto:mosquitto \
         mosquitto_sub:mosquitto-clients python3:python3 make:make; do
    command -v "${t%%:*}" >/dev/null || missing="$missing ${t#*:}"
done
if [ -n "$missing" ]; then
    fail "tools present (missing:$missing; run make deps)"; finish
fi
pass "tools present"

# The native mbgate serves `mbgate sim` for the smoke tests.
if [ -n "${MBGATE_SIM_BIN:-}" ]; then
    SIM_BIN=$MBGATE_SIM_BIN
else
    SIM_BIN=$ROOT/build/mbgate
    check "native build (make all, for mbgate sim)" make -C "$ROOT" -s all || finish
fi
check "native mbgate runs ($SIM_BIN)" "$SIM_BIN" --version || finish

# --- per architecture: what the build and the emulation need --------------
declare -A TRIPLET=() EMU=()
deps_ok() {
    local a=$1 ok=0
    if [ -n "${EMU[$a]}" ]; then
        command -v "${TRIPLET[$a]}-gcc" >/dev/null ||
            { echo "${TRIPLET[$a]}-gcc missing (crossbuild-essential-$a)"; ok=1; }
        command -v "${EMU[$a]}" >/dev/null || { echo "${EMU[$a]} missing (qemu-user-static)"; ok=1; }
    fi
    (cd "$ROOT" && dpkg-checkbuilddeps -a "$a" -Pcross,nocheck packaging/debian/control) || ok=1
    return "$ok"
}

BUILD_ARCHS=()
for a in "${ARCHS[@]}"; do
    if ! TRIPLET[$a]=$(dpkg-architecture -a"$a" -qDEB_HOST_GNU_TYPE 2>/dev/null); then
        fail "$a: a Debian architecture"; continue
    fi
    if [ "$a" = "$BUILD_ARCH" ]; then
        EMU[$a]=""
    else
        case $(dpkg-architecture -a"$a" -qDEB_HOST_GNU_CPU 2>/dev/null) in
        aarch64) EMU[$a]=qemu-aarch64-static ;;
        arm) EMU[$a]=qemu-arm-static ;;
        *) EMU[$a]=qemu-$(dpkg-architecture -a"$a" -qDEB_HOST_GNU_CPU)-static ;;
        esac
    fi
    if check "$a: cross toolchain, $a -dev packages and qemu installed (else: make deps ARCH=$a)" deps_ok "$a"; then
        BUILD_ARCHS+=("$a")
    fi
done

# --- build: all architectures side by side ---------------------------------
say "== building ${BUILD_ARCHS[*]:-nothing}"
declare -A BPID=() BSTART=()
for a in "${BUILD_ARCHS[@]}"; do
    BSTART[$a]=$SECONDS
    setsid "$ROOT/packaging/build-deb.sh" "$a" >"$WORK/build-$a.log" 2>&1 </dev/null &
    BPID[$a]=$!
    BG+=($!)
done
DEB_ARCHS=()
for a in "${BUILD_ARCHS[@]}"; do
    wait "${BPID[$a]}"; rc=$?
    TIMES["$a build (parallel)"]=$((SECONDS - BSTART[$a]))
    deb=$ROOT/build/mbgate_${VERSION}_$a.deb
    if [ $rc -eq 0 ] && [ -f "$deb" ] && [ "$(tail -n 1 "$WORK/build-$a.log")" = "$deb" ]; then
        pass "$a: build $(basename "$deb")"
        DEBS[$a]=$deb
        DEB_ARCHS+=("$a")
    else
        fail "$a: build mbgate_${VERSION}_$a.deb" "$WORK/build-$a.log"
    fi
done

# --- lint in the background while the smoke tests run ----------------------
declare -A LPID=() LSTART=()
for a in "${DEB_ARCHS[@]}"; do
    LSTART[$a]=$SECONDS
    setsid lintian --fail-on error,warning "${DEBS[$a]}" >"$WORK/lintian-$a.log" 2>&1 </dev/null &
    LPID[$a]=$!
    BG+=($!)
done

# --- the package's contents -------------------------------------------------
field_is() {  # DEB FIELD VALUE
    local v; v=$(dpkg-deb -f "$1" "$2"); echo "$2: $v"; [ "$v" = "$3" ]
}
elf_id() {  # class, machine and ABI flags of an ELF file
    readelf -h "$1" | sed -n 's/^ *\(Class\|Machine\|Flags\): *//p' |
        sed 's/0x[0-9a-f]*, *//' | tr '\n' ';'
}
elf_matches_arch() {
    local bin=$1 a=$2 libc
    libc=$(dpkg -L "libc6:$a" 2>/dev/null | grep "/${TRIPLET[$a]}/libc\.so\.6\$" | head -n 1)
    [ -n "$libc" ] || { echo "libc6:$a not installed"; return 1; }
    local want got
    want=$(elf_id "$libc"); got=$(elf_id "$bin")
    echo "mbgate: $got  libc6:$a: $want"
    [ -n "$got" ] && [ "$got" = "$want" ]
}
# Every library /usr/bin/mbgate links (DT_NEEDED) comes from a package of
# ARCH that Depends names; Depends names no package of another architecture.
shlibs_in_depends() {
    local bin=$1 a=$2 deb=$3 depends names lib pkgs pkg rc=0
    depends=$(dpkg-deb -f "$deb" Depends)
    echo "Depends: $depends"
    case $depends in *"\${"*) echo "unexpanded substitution variable in Depends"; rc=1 ;; esac
    names=$(printf '%s\n' "$depends" | sed 's/[,|]/\n/g' | sed 's/^ *//; s/[ (].*//')
    for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        # The packages of ARCH that ship <dir>/<triplet>/<lib> itself.
        pkgs=$(dpkg -S "*/${TRIPLET[$a]}/$lib" 2>/dev/null |
            sed -n "s#^\(.*\): [^ ]*/${TRIPLET[$a]}/$lib\$#\1#p" | tr ',' '\n' |
            sed -n "s/^ *\([^:]*\):$a\$/\1/p" | sort -u)
        pkg=$(printf '%s\n' "$pkgs" | grep -Fx -f - <(printf '%s\n' "$names") | head -n 1)
        if [ -z "$pkgs" ]; then
            echo "$lib: no package of $a ships it"; rc=1
        elif [ -z "$pkg" ]; then
            echo "$lib ($(printf '%s ' "$pkgs")) not in Depends"; rc=1
        else
            echo "$lib -> $pkg"
        fi
    done
    return "$rc"
}

# --- smoke test under qemu ----------------------------------------------------
# x_cmd ARCH: XCMD=(the extracted package's mbgate, emulated): qemu itself
# is the process (for spawn: its PID is the agent's).
x_cmd() {
    XCMD=("$WORK/$1/root/usr/bin/mbgate")
    [ -z "${EMU[$1]}" ] || XCMD=("${EMU[$1]}" -L / "${XCMD[@]}")
}
# run_x ARCH ARGS...: run it in the foreground.
run_x() { local XCMD; x_cmd "$1"; shift; "${XCMD[@]}" "$@"; }
version_is() { local out; out=$(run_x "$1" --version 2>&1); echo "$out"; [ "$out" = "mbgate $VERSION" ]; }
samples_arrive() {  # PORT TOPIC: 3 JSON samples within 20 s
    mosquitto_sub -h 127.0.0.1 -p "$1" -q 1 -t "$2" -C 3 -W 20 -v >"$WORK/sub.out" 2>&1
    local rc=$?
    cat "$WORK/sub.out"
    [ "$rc" -eq 0 ] && [ "$(grep -c '"v":[0-9]' "$WORK/sub.out")" -eq 3 ]
}
# ARCH SOCKET: the sample timestamps (ms) and `mbgate status --json`'s
# times and counters are plausible: on armhf time_t, long and size_t are 32
# bits, where a wrong width or format shows as a garbage or wrapped value.
times_sane() {
    local out
    out=$(run_x "$1" status --json --socket "$2" 2>&1) || { echo "$out"; return 1; }
    printf '%s\n' "$out"
    python3 - "$WORK/sub.out" "$out" <<'PY'
import json, sys, time
now = time.time() * 1000
st = json.loads(sys.argv[2])
dev = st["devices"][0]
bad = []
def near(name, ms):  # within 10 minutes of now
    if not isinstance(ms, int) or abs(ms - now) > 600000:
        bad.append(f"{name}={ms!r}")
for line in open(sys.argv[1]):
    topic, _, payload = line.partition(" ")
    near(topic + " ts", json.loads(payload)["ts"])
near("broker.since_ts", st["broker"]["since_ts"])
near("devices[0].last_good_ts", dev["last_good_ts"])
if not 0 <= st["uptime_s"] < 600: bad.append(f"uptime_s={st['uptime_s']!r}")
if not 0 < dev["polls"] < 100000: bad.append(f"polls={dev['polls']!r}")
if not 0 < st["broker"]["acked"] <= st["broker"]["published"] < 100000:
    bad.append(f"published/acked={st['broker']['published']}/{st['broker']['acked']}")
if not 0 < st["outbox"]["file_bytes"] < 1 << 30: bad.append(f"file_bytes={st['outbox']['file_bytes']!r}")
print("implausible: " + ", ".join(bad) if bad else "plausible")
sys.exit(1 if bad else 0)
PY
}
agent_stopped_cleanly() {
    stop_pid "$1"
    echo "exit status $STOP_RC"
    [ "$STOP_RC" = 0 ] || { tail -n 20 "$2"; false; }
}

smoke() {
    local a=$1 d=$WORK/$1 mq sim broker agent
    mkdir -p "$d/root" "$d/state"
    check "$a: dpkg-deb -x" dpkg-deb -x "${DEBS[$a]}" "$d/root" || return
    check "$a: Architecture: $a" field_is "${DEBS[$a]}" Architecture "$a"
    check "$a: /usr/bin/mbgate is an ELF for $a" elf_matches_arch "$d/root/usr/bin/mbgate" "$a"
    check "$a: Depends covers every linked library (shlibs)" \
        shlibs_in_depends "$d/root/usr/bin/mbgate" "$a" "${DEBS[$a]}"
    say "    Depends: $(dpkg-deb -f "${DEBS[$a]}" Depends)"
    # As `apt install ./mbgate_..._ARCH.deb` on a gateway would resolve them,
    # here against the multiarch packages of ARCH (simulated: nothing is
    # installed).
    check "$a: Depends resolvable (apt-get install -s ./$(basename "${DEBS[$a]}"))" \
        apt-get install -s -q --no-install-recommends "${DEBS[$a]}"
    local how=natively
    [ -z "${EMU[$a]}" ] || how="under ${EMU[$a]}"
    check "$a: mbgate --version $how" version_is "$a" || return
    check "$a: mbgate check -c <the shipped /etc/mbgate/mbgate.conf>" \
        run_x "$a" check -c "$d/root/etc/mbgate/mbgate.conf"

    mq=$(free_port)
    sim=$(free_port)
    while [ "$sim" = "$mq" ]; do sim=$(free_port); done
    broker_config "$mq" >"$d/mosquitto.conf"
    smoke_config "tests/packaging/cross_check.sh: the $a agent, a private broker, mbgate sim" \
        "xc-$a" "$d/state" "$mq" "$d/mbgate.sock" "$sim" >"$d/mbgate.conf"
    check "$a: mbgate check -c (the smoke test's config)" run_x "$a" check -c "$d/mbgate.conf" || return
    spawn "$d/mosquitto.log" mosquitto -c "$d/mosquitto.conf"
    broker=$LAST_PID
    spawn "$d/sim.log" "$SIM_BIN" sim -c "$d/mbgate.conf" --listen "127.0.0.1:$sim"
    check "$a: native mosquitto (:$mq) and mbgate sim (:$sim) listening" \
        wait_for 10 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$mq) && (exec 3<>/dev/tcp/127.0.0.1/$sim)" 2>/dev/null || return
    x_cmd "$a"
    spawn "$d/agent.log" "${XCMD[@]}" run -c "$d/mbgate.conf"
    agent=$LAST_PID
    if check "$a: agent started $how (control socket up)" wait_for 30 test -S "$d/mbgate.sock"; then
        check "$a: data flow: 3 samples on xc-$a/plc1/cycles (mosquitto_sub -C 3 -W 20)" \
            samples_arrive "$mq" "xc-$a/plc1/cycles"
        check "$a: mbgate status --socket: OK" \
            wait_for 15 run_x "$a" status --socket "$d/mbgate.sock" &&
            check "$a: timestamps and counters plausible (samples, status --json)" \
                times_sane "$a" "$d/mbgate.sock"
    else
        tail -n 20 "$d/agent.log"
    fi
    check "$a: agent stops cleanly on SIGTERM (exit 0)" agent_stopped_cleanly "$agent" "$d/agent.log"
    stop_pid "$broker"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}

for a in "${DEB_ARCHS[@]}"; do
    say "== $a: package checks and smoke test"
    t=$SECONDS
    smoke "$a"
    TIMES["$a smoke test"]=$((SECONDS - t))
done

for a in "${DEB_ARCHS[@]}"; do
    wait "${LPID[$a]}"; rc=$?
    TIMES["$a lintian (background)"]=$((SECONDS - LSTART[$a]))
    if [ $rc -eq 0 ]; then pass "$a: lintian --fail-on error,warning"
    else fail "$a: lintian --fail-on error,warning" "$WORK/lintian-$a.log"; fi
    CHECKED[$a]=1
done

finish
