#!/bin/bash
# tests/packaging/test_deb.sh - the Debian package, end to end (issue #7).
#
# Run as root (make deb-check). Builds the .deb and a higher test version,
# lints them, checks the systemd unit, then installs the package ON THIS
# MACHINE (systemd need not be PID 1), runs the installed agent as user
# mbgate against a private mosquitto on a free loopback port and
# `mbgate sim`, upgrades (a modified conffile and the outbox must survive),
# removes and purges (the user, /var/lib/mbgate and /etc/mbgate must go).
#
# Refuses to run when mbgate is already installed other than by an earlier
# run of this test (it would purge it). Whatever happens, it stops what it
# started (by PID) and purges what it installed. Prints one line per check
# and "N passed, N failed"; exits non-zero on any failure.
#
# Environment: MBGATE_DEB_ARCH (default: the host's architecture).
# shellcheck disable=SC2317,SC2016  # functions called through check/must; bash -c scripts
set -u
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ARCH=${MBGATE_DEB_ARCH:-$(dpkg-architecture -qDEB_HOST_ARCH)}
MARKER=/var/tmp/mbgate-deb-test.installed
WORK=
# shellcheck source=tests/packaging/lib.sh
. "$ROOT/tests/packaging/lib.sh"
# must NAME CMD...: like check, but stop the test when it fails.
must() { check "$@" || finish; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    if [ -e "$MARKER" ]; then
        dpkg --purge mbgate >"${WORK:-/tmp}/cleanup-purge.log" 2>&1 ||
            say "cleanup: dpkg --purge mbgate failed (see ${WORK:-/tmp}/cleanup-purge.log)"
        rm -f "$MARKER"
    fi
    if [ -n "$WORK" ] && [ "$FAILED" -eq 0 ]; then rm -rf "$WORK"; fi
}

finish() {
    trap - EXIT INT TERM
    cleanup
    say ""
    if [ "$FAILED" -eq 0 ]; then
        say "deb-check: PASS"
    else
        say "deb-check: FAIL (${FAILS[*]})"
        [ -z "$WORK" ] || say "logs kept in $WORK"
    fi
    say "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && exit 0
    exit 1
}
trap finish EXIT
trap 'say "interrupted"; FAILED=$((FAILED + 1)); FAILS+=(interrupted); finish' INT TERM

stat_is() { [ "$(stat -c '%a %U %G' "$1" 2>&1)" = "$2" ] || { stat -c '%n: %a %U %G' "$1"; false; }; }
file_has() { grep -q -- "$2" "$1" || { echo "$1 lacks: $2"; false; }; }
absent() { [ ! -e "$1" ] || { ls -ld "$1"; false; }; }
no_user() { ! getent passwd mbgate && ! getent group mbgate; }
version_is() { local v; v=$(dpkg-query -W -f='${Version}' mbgate 2>&1); [ "$v" = "$1" ] || { echo "installed: $v"; false; }; }
outbox_sums() { (cd /var/lib/mbgate && sha256sum outbox.db*) 2>&1; }

# ---------------------------------------------------------------------------
say "== mbgate Debian package test ($ARCH)"
if [ "$(id -u)" -ne 0 ]; then
    WORK=$(mktemp -d); fail "running as root (needed to install the package)"; finish
fi
WORK=$(mktemp -d /tmp/mbgate-deb-test.XXXXXX)
chmod 0755 "$WORK"

missing=
for t in dpkg-buildpackage:dpkg-dev dh:debhelper fakeroot:fakeroot lintian:lintian \
         systemd-analyze:systemd mosquitto:mosquitto mosquitto_sub:mosquitto-clients \
         setpriv:util-linux python3:python3 man:man-db; do
    command -v "${t%%:*}" >/dev/null || missing="$missing ${t#*:}"
done
if [ -n "$missing" ]; then
    fail "tools present (missing:$missing; run make deps)"; finish
fi
pass "tools present"

# dpkg's state of mbgate: "" or not-installed when absent.
pkg_state() { dpkg-query -W -f='${db:Status-Status}' mbgate 2>/dev/null; }
if [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != not-installed ]; then
    if [ -e "$MARKER" ]; then
        say "note: purging mbgate left installed by an earlier run of this test"
        dpkg --purge mbgate >"$WORK/purge-leftover.log" 2>&1
        rm -f "$MARKER"
    else
        fail "mbgate is not installed before the test (it is: refusing to purge someone's installation)"
        finish
    fi
fi

# --- build: the release version and a higher test version, side by side ---
VERSION=$(sed -n 's/^VERSION[[:space:]]*[:?]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$ROOT/Makefile" | head -n 1)
UPVERSION=$VERSION+test1
"$ROOT/packaging/build-deb.sh" "$ARCH" >"$WORK/build1.log" 2>&1 &
b1=$!
MBGATE_DEB_VERSION=$UPVERSION "$ROOT/packaging/build-deb.sh" "$ARCH" >"$WORK/build2.log" 2>&1 &
b2=$!
wait $b1; r1=$?
wait $b2; r2=$?
DEB=$ROOT/build/mbgate_${VERSION}_${ARCH}.deb
UPDEB=$ROOT/build/mbgate_${UPVERSION}_${ARCH}.deb
if [ $r1 -eq 0 ] && [ -f "$DEB" ]; then pass "build $(basename "$DEB")"; else fail "build $VERSION" "$WORK/build1.log"; fi
if [ $r2 -eq 0 ] && [ -f "$UPDEB" ]; then pass "build $(basename "$UPDEB")"; else fail "build $UPVERSION" "$WORK/build2.log"; fi
[ "$FAILED" -eq 0 ] || finish

check "lintian --fail-on error,warning" lintian --fail-on error,warning "$DEB"

# The unit as shipped: verify needs /usr/bin/mbgate and the man pages, so it
# runs after the install below; the security score needs nothing.
score_ok() {
    systemd-analyze security --offline=yes --threshold=20 "$1" >"$WORK/security.txt" 2>&1
    local rc=$?
    SCORE=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$WORK/security.txt")
    echo "exposure ${SCORE:-?}"
    return "$rc"
}
check "systemd-analyze security <= 2.0 (systemd/mbgate.service)" score_ok "$ROOT/systemd/mbgate.service"
say "    exposure level: ${SCORE:-unknown}"

# --- install -------------------------------------------------------------
touch "$MARKER"
must "install $VERSION" apt-get install -y -q --no-install-recommends "$DEB"
check "installed version is $VERSION" version_is "$VERSION"
check "mbgate --version" bash -c "/usr/bin/mbgate --version | grep -qx 'mbgate $VERSION'"
check "user mbgate: system user, no login, in dialout" bash -c '
    getent passwd mbgate | awk -F: "{ exit !(\$3 < 1000 && \$6 == \"/var/lib/mbgate\" && \$7 ~ /nologin\$/) }" &&
    id -nG mbgate | tr " " "\n" | grep -qx dialout && id -ng mbgate | grep -qx mbgate'
check "/etc/mbgate is root:mbgate 0750" stat_is /etc/mbgate "750 root mbgate"
check "/etc/mbgate/mbgate.conf is root:mbgate 0640" stat_is /etc/mbgate/mbgate.conf "640 root mbgate"
check "/var/lib/mbgate is mbgate:mbgate 0750" stat_is /var/lib/mbgate "750 mbgate mbgate"
check "conffile registered" file_has /var/lib/dpkg/info/mbgate.conffiles /etc/mbgate/mbgate.conf
check "mbgate check (shipped config)" /usr/bin/mbgate check
check "mbgate check as user mbgate" setpriv --reuid=mbgate --regid=mbgate --init-groups /usr/bin/mbgate check -c /etc/mbgate/mbgate.conf
check "man pages mbgate(8), mbgate.conf(5)" bash -c '
    for p in /usr/share/man/man8/mbgate.8.gz /usr/share/man/man5/mbgate.conf.5.gz; do
        out=$(man --warnings -l "$p" 2>&1 >/dev/null); [ -z "$out" ] || { echo "$p: $out"; exit 1; }
    done'
check "systemd-analyze verify (installed unit)" systemd-analyze verify /lib/systemd/system/mbgate.service
check "systemd-analyze security <= 2.0 (installed unit)" score_ok /lib/systemd/system/mbgate.service

# --- run: the installed agent as user mbgate, a private broker, the simulator
MQTT_PORT=$(free_port)
SIM_PORT=$(free_port)
while [ "$SIM_PORT" = "$MQTT_PORT" ]; do SIM_PORT=$(free_port); done
broker_config "$MQTT_PORT" >"$WORK/mosquitto.conf"
# The modified conffile: the agent run as the service would (default path).
smoke_config "mbgate-deb-test: modified by tests/packaging/test_deb.sh" debtest /var/lib/mbgate \
    "$MQTT_PORT" /run/mbgate/mbgate.sock "$SIM_PORT" >/etc/mbgate/mbgate.conf
must "modified config is valid" /usr/bin/mbgate check

start_broker() {
    spawn "$WORK/mosquitto$1.log" mosquitto -c "$WORK/mosquitto.conf"
    BROKER_PID=$LAST_PID
    wait_for 10 port_open "$MQTT_PORT"
}
# As systemd would: RuntimeDirectory=mbgate (0750), user mbgate with its
# supplementary groups, no capabilities, no new privileges, UMask=0007.
start_agent() {
    install -d -o mbgate -g mbgate -m 0750 /run/mbgate
    spawn "$WORK/agent$1.log" setpriv --reuid=mbgate --regid=mbgate --init-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        sh -c 'umask 0007; exec /usr/bin/mbgate run -c /etc/mbgate/mbgate.conf'
    AGENT_PID=$LAST_PID
    wait_for 10 test -S /run/mbgate/mbgate.sock
}

spawn "$WORK/sim.log" /usr/bin/mbgate sim -c /etc/mbgate/mbgate.conf --listen "127.0.0.1:$SIM_PORT"
must "mbgate sim listening on 127.0.0.1:$SIM_PORT" wait_for 10 port_open "$SIM_PORT"
must "mosquitto listening on 127.0.0.1:$MQTT_PORT" start_broker 1
must "agent started as user mbgate (control socket up)" start_agent 1
check "agent runs as mbgate" bash -c "[ \"\$(ps -o user= -p $AGENT_PID)\" = mbgate ]"
check "control socket is mbgate:mbgate 0660" stat_is /run/mbgate/mbgate.sock "660 mbgate mbgate"
check "data flow: 5 samples on debtest/plc1/#" \
    timeout 20 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'debtest/plc1/#' -C 5 -v
check "birth message on debtest/status" bash -c \
    "timeout 10 mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t debtest/status -C 1 | grep -q '\"online\"'"
check "mbgate status: OK" wait_for 10 /usr/bin/mbgate status

# A backlog for the upgrade: the broker goes away, samples pile up in the
# outbox, the agent stops (SIGTERM: clean stop) with them pending.
stop_pid "$BROKER_PID"
sleep 2
stop_pid "$AGENT_PID"
check "agent stopped cleanly on SIGTERM (exit 0)" bash -c "[ '$STOP_RC' = 0 ] || { echo 'exit status $STOP_RC'; tail -n 20 '$WORK/agent1.log'; false; }"
check "outbox in /var/lib/mbgate" test -s /var/lib/mbgate/outbox.db
SUMS_BEFORE=$(outbox_sums)
CONF_BEFORE=$(sha256sum /etc/mbgate/mbgate.conf)

# --- upgrade ---------------------------------------------------------------
must "upgrade to $UPVERSION" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$UPDEB"
check "installed version is $UPVERSION" version_is "$UPVERSION"
check "upgraded mbgate --version" bash -c "/usr/bin/mbgate --version | grep -qx 'mbgate $UPVERSION'"
check "modified conffile kept" bash -c "[ \"\$(sha256sum /etc/mbgate/mbgate.conf)\" = '$CONF_BEFORE' ]"
check "no .dpkg-new/.dpkg-dist left" bash -c '! ls /etc/mbgate/*.dpkg-* 2>/dev/null | grep -q .'
check "conffile still root:mbgate 0640" stat_is /etc/mbgate/mbgate.conf "640 root mbgate"
check "outbox unchanged by the upgrade" bash -c "[ \"\$(cd /var/lib/mbgate && sha256sum outbox.db*)\" = '$SUMS_BEFORE' ]"
check "user mbgate kept" getent passwd mbgate
# The backlog from before the upgrade is delivered by the new version.
must "mosquitto restarted" start_broker 2
spawn "$WORK/hist.log" timeout 30 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'debtest/plc1/#' -v
HIST_PID=$LAST_PID
sleep 0.5
must "upgraded agent started" start_agent 2
check "backlog delivered after the upgrade (\"hist\":true)" \
    wait_for 20 grep -q '"hist":true' "$WORK/hist.log"
stop_pid "$HIST_PID"
stop_pid "$AGENT_PID"
stop_pid "$BROKER_PID"

# --- remove, then purge ----------------------------------------------------
must "dpkg --remove mbgate" dpkg --remove mbgate
check "remove: binary gone" absent /usr/bin/mbgate
check "remove: conffile, user and outbox kept" bash -c \
    'test -f /etc/mbgate/mbgate.conf && getent passwd mbgate >/dev/null && test -s /var/lib/mbgate/outbox.db'
must "dpkg --purge mbgate" dpkg --purge mbgate
rm -f "$MARKER"
check "purge: package gone" bash -c "st=\$(dpkg-query -W -f='\${db:Status-Status}' mbgate 2>/dev/null); [ -z \"\$st\" ] || [ \"\$st\" = not-installed ] || { echo \"dpkg state: \$st\"; false; }"
check "purge: user and group mbgate gone" no_user
check "purge: /var/lib/mbgate gone" absent /var/lib/mbgate
check "purge: /etc/mbgate gone" absent /etc/mbgate
check "purge: /run/mbgate gone" absent /run/mbgate
check "purge: no statoverrides left" bash -c '! dpkg-statoverride --list | grep -q mbgate'
check "purge: mbgate no longer in group dialout" bash -c '! getent group dialout | grep -qw mbgate'

finish
