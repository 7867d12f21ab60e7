# tests/packaging/lib.sh - the check harness shared by test_deb.sh and
# cross_check.sh (sourced). The caller sets WORK (a directory for the
# output of each check) and may define on_fail NAME, called for every
# failed check. Counts go to PASSED/FAILED/FAILS; background processes
# started with spawn are listed in PIDS for the caller's cleanup.
# shellcheck shell=bash disable=SC2034  # PASSED, FAILS, STOP_RC: the caller's
PIDS=()
PASSED=0
FAILED=0
FAILS=()

say() { printf '%s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); say "PASS: $1"; }
# fail NAME [OUTPUT_FILE]: record a failure, show the output's last lines.
fail() {
    FAILED=$((FAILED + 1)); FAILS+=("$1"); say "FAIL: $1"
    if declare -F on_fail >/dev/null; then on_fail "$1"; fi
    [ -z "${2:-}" ] || [ ! -s "$2" ] || sed 's/^/    | /' "$2" | tail -n 25
}
# check NAME CMD...: run CMD, record the outcome (output shown on failure).
check() {
    local name=$1; shift
    if "$@" >"$WORK/out" 2>&1; then pass "$name"; return 0; fi
    fail "$name" "$WORK/out"; return 1
}

# spawn LOG CMD...: start a background process, remember its PID (LAST_PID).
spawn() {
    local log=$1; shift
    "$@" >"$log" 2>&1 </dev/null &
    PIDS+=($!)
    LAST_PID=$!
}
# stop_pid PID: SIGTERM, SIGKILL after 10 s; STOP_RC is its exit status.
stop_pid() {
    local pid=$1 _ p keep=()
    STOP_RC=
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    STOP_RC=$?
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    return 0
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for SECONDS CMD...: poll CMD every 0.2 s.
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.2; done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# smoke_config COMMENT ID STATE_DIR MQTT_PORT SOCKET SIM_PORT: the smoke
# tests' agent config on stdout (topic prefix = ID): a counter and a float
# on one simulated PLC, polled every 100 ms, status every 5 s.
smoke_config() {
    cat <<CONF
# $1
gateway = { id = "$2"; state_dir = "$3"; log_level = "info"; };
mqtt = { host = "127.0.0.1"; port = $4; topic_prefix = "$2"; qos = 1; };
status = { publish_interval_s = 5; };
control = { socket = "$5"; };
devices = (
  { name = "plc1"; host = "127.0.0.1"; port = $6; poll_ms = 100;
    tags = (
      { name = "cycles"; table = "holding"; address = 0; type = "uint32"; sim = "counter"; },
      { name = "temp"; table = "holding"; address = 10; type = "float32"; min = 0.0; max = 100.0; }
    ); }
);
CONF
}

# broker_config PORT: a private mosquitto on 127.0.0.1:PORT, on stdout.
broker_config() {
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$1"
}
