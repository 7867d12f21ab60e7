"""Links (ISSUE #6): Modbus RTU, shared links, per-device isolation, link recovery.

SPEC §3 (devices: transport "rtu", devices sharing a serial port or host:port
share one link, polled in turn), §4 (P/D/status), §7 (status).

The serial line is a socat PTY pair: the agent opens TMP/ttyA, an independent
pymodbus RTU server (units_plc.py) serves several unit ids on TMP/ttyB.
Timing bounds follow the design in src/bus.c: a device that stops answering
costs its retries once, (retries+1) x timeout_ms, then is backed off (1 s
doubling to 30 s) and probed with a single attempt, one timeout_ms; a broken
link is reopened after 0.5 s doubling to 10 s.
"""
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (SLOW, HERE, PREFIX, PYTHON, Proc, agent_status, control_socket, encode,
                      free_port, run_cli, tcp_device, wait_for, write_config)

LINK_BACKOFF_MAX_S = 10.0
JITTER_S = 0.15 * SLOW  # scheduling and pymodbus latency on a loaded test machine


# ---------------------------------------------------------------- helpers

class Socat(Proc):
    """A virtual null-modem cable: two PTYs, linked as a and b. SIGTERM makes
    socat remove both links, as a USB adapter's tty vanishes when unplugged."""

    def __init__(self, registry, tmp_path, a, b, name="socat"):
        self.a, self.b = Path(a), Path(b)
        super().__init__(registry, name,
                         ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}",
                          f"pty,raw,echo=0,link={b}"],
                         Path(tmp_path) / f"{name}.log")

    def start(self):
        self._spawn()
        wait_for(lambda: (self.a.exists() and self.b.exists()) or not self.running(), 10,
                 f"socat to create {self.a} and {self.b}", diag=self.diag)
        assert self.running(), self.diag()
        return self

    def stop(self):
        rc = self.terminate(5)
        wait_for(lambda: not self.a.exists() and not self.b.exists(), 5, "the PTY links to vanish")
        return rc


class UnitsPLC(Proc):
    """units_plc.py: several unit ids on a serial port (RTU) or TCP port."""

    def __init__(self, registry, tmp_path, units, serial=None, tcp_port=0, name="units"):
        self.tmp_path = Path(tmp_path)
        self.units_path = self.tmp_path / f"{name}.json"
        self.stats_path = self.tmp_path / f"{name}-stats.json"
        self.units_path.write_text(json.dumps(units))
        argv = [PYTHON, HERE / "units_plc.py", "--units", self.units_path,
                "--stats", self.stats_path]
        argv += ["--serial", serial] if serial else ["--tcp-port", tcp_port]
        self.port = None
        super().__init__(registry, name, argv, self.tmp_path / f"{name}.log")

    def start(self, timeout=15.0):
        p = self._spawn(stdout=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                pytest.fail(f"{self.name} did not become ready\n{self.diag()}", pytrace=False)
            if select.select([p.stdout], [], [], min(left, 0.2))[0]:
                line += os.read(p.stdout.fileno(), 256)
        m = re.match(rb"READY (?:modbus=(\d+)|serial=)", line)
        assert m, f"unexpected banner {line!r}"
        self.port = int(m.group(1)) if m.group(1) else None
        return self

    def reconfigure(self, units):
        """New mute/gateway_error sets, at once (SIGHUP)."""
        self.units_path.write_text(json.dumps(units))
        self.signal(signal.SIGHUP)

    def stats(self):
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}


def rtu_device(name, serial, unit_id, tags, **kw):
    d = {"name": name, "transport": "rtu", "serial": str(serial), "baud": 19200,
         "parity": "none", "data_bits": 8, "stop_bits": 1, "rs485": True, "unit_id": unit_id,
         "poll_ms": 200, "timeout_ms": 300, "retries": 1}
    d.update(kw)
    d["tags"] = list(tags)
    return d


COUNTER = {"name": "count", "table": "input", "address": 0, "type": "uint16"}


def sample_times(col, dev, tag="count", after=0):
    """ts (s) of the good samples of dev/tag, in order."""
    return [d["ts"] / 1000 for d in col.payloads(f"{PREFIX}/{dev}/{tag}", after)
            if d.get("q") == "good"]


def gaps(ts):
    return [b - a for a, b in zip(ts, ts[1:])]


def states(col, dev, after=0):
    """P/D/status changes: a republish of the same state (the agent's birth
    after connecting to the broker) is not a change."""
    out = []
    for d in col.payloads(f"{PREFIX}/{dev}/status", after):
        if not out or out[-1] != d["state"]:
            out.append(d["state"])
    return out


def wait_state(col, dev, state, timeout, after=0):
    return col.wait_message(f"{PREFIX}/{dev}/status", lambda d: d.get("state") == state,
                            timeout=timeout, after=after, raw=True)


def status_json(mbgate_bin, conf):
    return {d["name"]: d for d in agent_status(mbgate_bin, conf)["devices"]}


def established(port):
    """Established TCP connections whose local port is port (the server's
    side), from /proc/net/tcp: their peers' ports."""
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote, st = f[1], f[2], f[3]
        if st == "01" and int(local.split(":")[1], 16) == port:
            peers.add(int(remote.split(":")[1], 16))
    return peers


@pytest.fixture
def serial_pair(procs, tmp_path):
    """make(name) -> started Socat with links tmp_path/ttyA, tmp_path/ttyB."""
    def make(name="socat"):
        return Socat(procs, tmp_path, tmp_path / "ttyA", tmp_path / "ttyB", name=name).start()
    return make


# ---------------------------------------------------------------- RTU end to end

RTU_UNITS = {
    "1": {"holding": {"0": encode("float32", 123.456, "CDAB"), "10": 0}},
    "2": {"holding": {"0": encode("int16", -1234), "1": encode("uint32", 70000), "10": 5}},
}


def test_rtu_two_units_on_one_port(tmp_path, broker, collector, serial_pair, procs, make_agent,
                                   mbgate_bin):
    serial_pair()
    plc = UnitsPLC(procs, tmp_path, RTU_UNITS, serial=tmp_path / "ttyB").start()
    gap_ms = 20  # far above the default 3.5 character times, so the server can see it
    devs = [
        rtu_device("meter", tmp_path / "ttyA", 1, [
            {"name": "power", "table": "holding", "address": 0, "type": "float32"},
            {"name": "sp", "table": "holding", "address": 10, "type": "uint16", "writable": True},
            COUNTER], byte_order="CDAB", frame_gap_ms=gap_ms),
        rtu_device("drive", tmp_path / "ttyA", 2, [
            {"name": "torque", "table": "holding", "address": 0, "type": "int16"},
            {"name": "hours", "table": "holding", "address": 1, "type": "uint32"},
            {"name": "sp", "table": "holding", "address": 10, "type": "uint16", "writable": True},
            COUNTER], frame_gap_ms=gap_ms),
    ]
    conf = write_config(tmp_path, devs, broker.port)
    agent = make_agent(conf).start()
    for dev in ("meter", "drive"):
        wait_state(collector, dev, "up", 15)
    want = {"meter/power": 123.456, "drive/torque": -1234, "drive/hours": 70000,
            "meter/sp": 0, "drive/sp": 5}
    for topic, v in want.items():
        d = collector.wait_message(f"{PREFIX}/{topic}", lambda d: d.get("q") == "good", timeout=10)
        assert d["v"] == v, (topic, d)
    # the RS-485 mode a PTY lacks is reported once, not on every open
    assert len(re.findall(r"RS-485", agent.log_text())) == 1, agent.log_tail()

    # setpoints on the shared bus go between the polls, to the right unit
    for dev, v in (("meter", 321), ("drive", 654)):
        r = run_cli(mbgate_bin, "write", "--socket", control_socket(conf), dev, "sp", str(v))
        assert r.returncode == 0, (r.stdout, r.stderr)
        collector.wait_message(f"{PREFIX}/{dev}/sp", lambda d, v=v: d.get("v") == v, timeout=5)
    mk = collector.mark()
    collector.wait_messages(f"{PREFIX}/drive/count", 5, timeout=5, after=mk)
    assert [d["v"] for d in collector.payloads(f"{PREFIX}/meter/sp", mk)][-1] == 321
    assert [d["v"] for d in collector.payloads(f"{PREFIX}/drive/sp", mk)][-1] == 654
    # every frame, polls and writes alike, kept the configured silence before it
    st = plc.stats()
    assert st["answers"] > 20 and st["min_gap_ms"] >= gap_ms - 0.5, st
    procs.assert_alive(agent)


# ---------------------------------------------------------------- one silent slave on a shared bus

def test_rtu_silent_slave_does_not_slow_the_others(tmp_path, broker, collector, serial_pair,
                                                   procs, make_agent, mbgate_bin):
    serial_pair()
    units = {u: {"holding": {"0": int(u) * 11}} for u in ("1", "2", "3")}
    plc = UnitsPLC(procs, tmp_path, units, serial=tmp_path / "ttyB").start()
    poll, timeout, retries = 0.2, 0.3, 1
    devs = [rtu_device(f"s{u}", tmp_path / "ttyA", int(u),
                       [COUNTER, {"name": "v", "table": "holding", "address": 0, "type": "uint16"}],
                       poll_ms=int(poll * 1000), timeout_ms=int(timeout * 1000), retries=retries)
            for u in ("1", "2", "3")]
    conf = write_config(tmp_path, devs, broker.port)
    make_agent(conf).start()
    for dev in ("s1", "s2", "s3"):
        wait_state(collector, dev, "up", 15)

    # unit 3 stops answering: reported down once its retries are spent
    mk = collector.mark()
    t_mute = time.time()
    plc.reconfigure(dict(units, mute=[3]))
    down = wait_state(collector, "s3", "down", (retries + 1) * timeout + 2 * poll + 1, after=mk)
    err = json.loads(down.payload)["error"]
    assert "timeout" in err, err
    t_down = down.time
    time.sleep(6.0)  # probes at +1 s, +3 s (backoff 1, 2, 4 s ...)
    t_end = time.time()
    st = status_json(mbgate_bin, conf)
    assert st["s3"]["state"] == "down" and "timeout" in st["s3"]["last_error"], st["s3"]
    assert st["s1"]["state"] == "up" and st["s2"]["state"] == "up", st

    for dev in ("s1", "s2"):
        # from the last sample before the mute: the failure may begin right after it
        ts = [t for t in sample_times(collector, dev) if t_mute - 2 * poll <= t <= t_end]
        g = gaps(ts)
        assert len(g) >= 0.8 * (t_end - t_mute) / poll, (dev, len(g))
        # the failure itself costs the others at most (retries+1) timeouts once ...
        assert max(g) <= poll + (retries + 1) * timeout + JITTER_S, (dev, g)
        # ... each later probe of the silent slave one timeout at most ...
        later = gaps([t for t in ts if t >= t_down + JITTER_S])
        assert max(later) <= poll + timeout + JITTER_S, (dev, later)
        # ... and only a probe disturbs the period: 1 failure + probes at +1 s, +3 s
        slow = [x for x in g if x > poll + JITTER_S]
        assert len(slow) <= 3 + 1, (dev, slow)
        assert abs(statistics.median(g) - poll) <= 0.05, (dev, statistics.median(g))
        assert "down" not in states(collector, dev, mk)
    assert states(collector, "s3", mk) == ["down"]

    # unit 3 answers again: up at its next probe, the backoff (now 4 s) at most
    mk2 = collector.mark()
    plc.reconfigure(units)
    wait_state(collector, "s3", "up", 4 + 1, after=mk2)
    collector.wait_message(f"{PREFIX}/s3/v", lambda d: d.get("v") == 33, timeout=3, after=mk2)


# ---------------------------------------------------------------- a slave answering garbage

def test_rtu_garbage_is_the_slaves_problem_until_nothing_else_answers(
        tmp_path, broker, collector, serial_pair, procs, make_agent):
    """Bad frames from one slave take only that slave down (the others' good
    answers prove the line works); bad frames from everyone, 3 in a row,
    reopen the port."""
    serial_pair()
    units = {"1": {"holding": {"0": 1}}, "2": {"holding": {"0": 2}}}
    plc = UnitsPLC(procs, tmp_path, dict(units, garbage=[2]), serial=tmp_path / "ttyB").start()
    poll, timeout, retries = 0.2, 0.3, 1
    tags = [COUNTER, {"name": "v", "table": "holding", "address": 0, "type": "uint16"}]
    devs = [rtu_device(f"g{u}", tmp_path / "ttyA", u, tags, poll_ms=int(poll * 1000),
                       timeout_ms=int(timeout * 1000), retries=retries) for u in (1, 2)]
    conf = write_config(tmp_path, devs, broker.port)
    agent = make_agent(conf).start()
    wait_state(collector, "g1", "up", 15)
    err = json.loads(wait_state(collector, "g2", "down", 5).payload)["error"]
    assert "CRC" in err, err
    t0 = time.time()
    time.sleep(4)  # g2 probed at +1, +3 s
    g = gaps([t for t in sample_times(collector, "g1") if t >= t0])
    # garbage costs the others no more than silence would
    assert len(g) >= 0.8 * 4 / poll and max(g) <= poll + timeout + JITTER_S, g
    assert states(collector, "g1") == ["up"]
    assert "link down" not in agent.log_text(), agent.log_tail()

    mk = collector.mark()
    plc.reconfigure(dict(units, garbage=[1, 2]))
    agent.wait_log(r"link down: .*3 bad frames in a row \(Invalid CRC\)", 10)
    wait_state(collector, "g1", "down", 5, after=mk)
    mk2 = collector.mark()
    plc.reconfigure(units)
    for dev, v in (("g1", 1), ("g2", 2)):
        wait_state(collector, dev, "up", LINK_BACKOFF_MAX_S + 5, after=mk2)
        collector.wait_message(f"{PREFIX}/{dev}/v", lambda d, v=v: d.get("v") == v, timeout=5,
                               after=mk2)
    assert agent.log_text().count("link down") == 1, agent.log_tail()


# ---------------------------------------------------------------- TCP gateway with dead unit ids

@pytest.mark.parametrize("dead", ["silent", "gateway_error"])
def test_tcp_gateway_dead_units_keep_the_connection(dead, tmp_path, broker, collector, procs,
                                                     make_agent):
    """One connection to a gateway, three unit ids behind it, two of them dead
    (silent, or answered with exception 0x0B by the gateway). Two dead units
    in a row must not be taken for a dead connection while a third answers."""
    units = {"1": {"holding": {"0": 7}}, "2": {}, "3": {},
             ("mute" if dead == "silent" else "gateway_error"): [2, 3]}
    gw = UnitsPLC(procs, tmp_path, units).start()
    poll, timeout, retries = 0.1, 0.3, 1
    tags = [COUNTER, {"name": "v", "table": "holding", "address": 0, "type": "uint16"}]
    devs = [tcp_device(name, gw.port, tags, unit_id=unit, poll_ms=int(poll * 1000),
                       timeout_ms=int(timeout * 1000), retries=retries)
            for name, unit in (("gwa", 1), ("gwb", 2), ("gwc", 3))]
    conf = write_config(tmp_path, devs, broker.port)
    make_agent(conf).start()
    wait_state(collector, "gwa", "up", 15)
    for dev in ("gwb", "gwc"):
        err = json.loads(wait_state(collector, dev, "down", 5).payload)["error"]
        assert ("timeout" if dead == "silent" else "failed to respond") in err, err

    t0 = time.time()
    peers = set()
    while time.time() < t0 + 5:  # the dead units are probed at +1 s, +3 s
        peers |= established(gw.port)
        time.sleep(0.05)
    assert len(peers) == 1, f"connections used: {peers}"
    assert gw.stats() == {"accepted": 1, "active": 1}, gw.stats()
    g = gaps([t for t in sample_times(collector, "gwa") if t >= t0])
    assert len(g) >= 0.8 * 5 / poll, len(g)
    # a probe costs one timeout per dead unit (nothing when the gateway answers)
    assert max(g) <= poll + (2 * timeout if dead == "silent" else 0) + JITTER_S, g
    assert states(collector, "gwa") == ["up"]
    assert states(collector, "gwb") == ["down"] and states(collector, "gwc") == ["down"]


# ---------------------------------------------------------------- black hole: accepts, never answers

class BlackHole:
    """A TCP listener that accepts connections and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = []  # (monotonic time, socket)
        self.closed_by_peer = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
                self.accepted.append((time.monotonic(), c))
            except socket.timeout:
                pass
            for _, c in self.accepted:
                if c.fileno() < 0:
                    continue
                try:
                    c.setblocking(False)
                    if c.recv(4096) == b"":
                        self.closed_by_peer += 1
                        c.close()
                except BlockingIOError:
                    pass
                except OSError:
                    c.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        for _, c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def black_hole():
    bh = BlackHole()
    yield bh
    bh.close()


def test_black_hole_plc_is_detected_and_reconnected(tmp_path, broker, collector, make_agent,
                                                    black_hole, mbgate_bin):
    poll, timeout, retries = 0.1, 0.3, 1
    devs = [tcp_device(name, black_hole.port, [COUNTER], unit_id=unit, poll_ms=int(poll * 1000),
                       timeout_ms=int(timeout * 1000), retries=retries)
            for name, unit in (("bh1", 1), ("bh2", 2))]
    conf = write_config(tmp_path, devs, broker.port)
    make_agent(conf).start()
    wait_for(lambda: black_hole.accepted, 15, "the agent to connect")
    t_conn = black_hole.accepted[0][0]
    d1 = wait_state(collector, "bh1", "down", 10)
    d2 = wait_state(collector, "bh2", "down", 10)
    # monotonic vs wall clock: compare durations measured on one clock
    lag = time.monotonic() - time.time()
    # the first device fails after its retries; the second is polled right after
    assert d1.time + lag - t_conn <= (retries + 1) * timeout + 0.5, d1.time + lag - t_conn
    assert d2.time + lag - t_conn <= 2 * (retries + 1) * timeout + 0.5, d2.time + lag - t_conn
    for d in (d1, d2):
        assert "timeout" in json.loads(d.payload)["error"], d.payload
    # the tag's bad sample names the kind of failure (SPEC §4), the detail is above
    bad = collector.wait_message(f"{PREFIX}/bh1/{COUNTER['name']}", lambda d: d.get("q") == "bad", 5)
    assert bad == {"v": None, "ts": bad["ts"], "q": "bad", "error": "timeout"}, bad

    # nobody answers on the connection: it is dropped and reopened (half-open
    # detection), with backoff, and the devices stay down without flapping
    wait_for(lambda: len(black_hole.accepted) >= 3 and black_hole.closed_by_peer >= 2, 10,
             "the agent to drop and reopen the silent connection")
    st = status_json(mbgate_bin, conf)
    assert st["bh1"]["state"] == "down" and st["bh2"]["state"] == "down", st
    assert states(collector, "bh1") == ["down"] and states(collector, "bh2") == ["down"]


# ---------------------------------------------------------------- TCP PLC killed and restarted

def test_tcp_plc_restarted_20_times(tmp_path, broker, collector, make_sim, make_agent, procs):
    """Most restarts are immediate: the first reopen, 0.5 s after the failure,
    finds the PLC back. Two outages last 2.5 s, long enough for the backoff to
    grow (reopens at +0.5, +1.5, +3.5 s); it must be back at 0.5 s next time."""
    port = free_port()
    tags = [{"name": "count", "table": "holding", "address": 0, "type": "uint16", "sim": "counter"}]
    conf = write_config(tmp_path, [tcp_device("plc", port, tags, poll_ms=100, timeout_ms=500)],
                        broker.port)
    sim = make_sim(conf, port).start()
    agent = make_agent(conf).start()
    wait_state(collector, "plc", "up", 15)
    long_outages = {6, 13}
    recoveries = []
    for i in range(20):
        mk = collector.mark()
        sim.kill()
        wait_state(collector, "plc", "down", 5, after=mk)
        if i in long_outages:
            time.sleep(2.5)
        mk2 = collector.mark()
        t0 = time.time()
        sim.start()
        up = wait_state(collector, "plc", "up", LINK_BACKOFF_MAX_S + 5, after=mk2)
        recoveries.append(up.time - t0)
        procs.assert_alive(agent)
    assert max(recoveries) < LINK_BACKOFF_MAX_S + 1 * SLOW, recoveries
    short = [r for i, r in enumerate(recoveries) if i not in long_outages]
    assert max(short) < 0.5 + 1 * SLOW, recoveries
    assert states(collector, "plc") == ["up"] + ["down", "up"] * 20
    mk = collector.mark()
    collector.wait_messages(f"{PREFIX}/plc/count", 5, timeout=5, after=mk)


# ---------------------------------------------------------------- serial port vanishes and returns

@pytest.mark.parametrize("path", ["direct", "by-id"])
def test_serial_port_vanishes_and_returns(path, tmp_path, broker, collector, serial_pair, procs,
                                          make_agent, mbgate_bin):
    serial = tmp_path / "ttyA"
    if path == "by-id":  # as udev's /dev/serial/by-id/usb-...-if00-port0 -> ../../ttyUSB0
        serial = tmp_path / "by-id-link"
        serial.symlink_to(tmp_path / "ttyA")
    cable = serial_pair()
    units = {"1": {"holding": {"0": 1}}, "2": {"holding": {"0": 2}}}
    plc = UnitsPLC(procs, tmp_path, units, serial=tmp_path / "ttyB").start()
    tags = [COUNTER, {"name": "v", "table": "holding", "address": 0, "type": "uint16"},
            {"name": "sp", "table": "holding", "address": 10, "type": "uint16", "writable": True}]
    devs = [rtu_device(f"r{u}", serial, u, tags) for u in (1, 2)]
    conf = write_config(tmp_path, devs, broker.port)
    agent = make_agent(conf).start()
    for dev in ("r1", "r2"):
        wait_state(collector, dev, "up", 15)

    # the adapter is unplugged: both PTY ends vanish
    mk = collector.mark()
    plc.kill()
    cable.stop()
    for dev in ("r1", "r2"):
        wait_state(collector, dev, "down", 5, after=mk)
    # nothing waits for the port: a command is refused at once
    t = time.monotonic()
    r = run_cli(mbgate_bin, "write", "--socket", control_socket(conf), "r1", "sp", "5")
    assert r.returncode != 0 and "device_down" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert time.monotonic() - t < 1.0 * SLOW
    time.sleep(1.0)

    # ... and plugged in again, with new PTYs behind the same names
    mk2 = collector.mark()
    t0 = time.monotonic()
    cable2 = serial_pair("socat2")
    assert os.path.realpath(serial).startswith("/dev/pts/")
    UnitsPLC(procs, tmp_path, {"1": {"holding": {"0": 10}}, "2": {"holding": {"0": 20}}},
             serial=cable2.b, name="units2").start()
    for dev, v in (("r1", 10), ("r2", 20)):
        wait_state(collector, dev, "up", LINK_BACKOFF_MAX_S + 5, after=mk2)
        collector.wait_message(f"{PREFIX}/{dev}/v", lambda d, v=v: d.get("v") == v, timeout=5,
                               after=mk2)
    assert time.monotonic() - t0 < LINK_BACKOFF_MAX_S + 5
    procs.assert_alive(agent)
    assert agent.log_text().count("link down") == 1, agent.log_tail()
    assert agent.log_text().count("RS-485") == 1, agent.log_tail()
    for dev in ("r1", "r2"):
        assert states(collector, dev) == ["up", "down", "up"], states(collector, dev)
