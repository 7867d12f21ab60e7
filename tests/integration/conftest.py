"""Integration-test harness for mbgate (SPEC.md).

Everything a test starts (mosquitto, `mbgate run`, `mbgate sim`, the pymodbus
PLC) listens on a free 127.0.0.1 port, writes its output below tmp_path, is
tracked by the per-test `procs` registry and is stopped by PID in teardown,
even when the test failed. Teardown also fails the test when any process's
stderr holds a sanitizer report (ASan/UBSan/LSan), so `make asan` catches
memory errors that did not change the test's outcome.

Run with Debian's interpreter (python3-pytest, python3-paho-mqtt 1.6,
python3-pymodbus 3.0):

    cd tests/integration && MBGATE_BIN=/abs/build/mbgate /usr/bin/python3 -m pytest -q -x .
"""
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import namedtuple
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"
MOSQUITTO = "/usr/sbin/mosquitto"
GATEWAY_ID = "itest"
PREFIX = "mbgate/" + GATEWAY_ID           # P in SPEC §4 (the default topic prefix)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "WARNING: ThreadSanitizer")
# Sanitizer builds run several times slower: tests scale their time bounds
# by this (make asan sets it).
SLOW = float(os.environ.get("MBGATE_TEST_SLOW", "1"))


# --------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------

def wait_for(predicate, timeout=10.0, desc="condition", interval=0.02, diag=None):
    """Poll predicate() until it returns a truthy value; return that value.
    On timeout fail the test with desc (and diag(), if given, for context)."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.1f}s waiting for {desc}"
            if diag is not None:
                msg += "\n" + diag()
            pytest.fail(msg, pytrace=False)
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def now_ms():
    return int(time.time() * 1000)


def line_of(path, needle, nth=1):
    """1-based line number of the nth line of path that contains needle."""
    seen = 0
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} (#{nth}) not in {path}")


# --------------------------------------------------------------------------
# register encodings (SPEC §3 byte orders)
# --------------------------------------------------------------------------

_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I",
           "int64": ">q", "uint64": ">Q", "float32": ">f", "float64": ">d"}


def encode(type_, value, order="ABCD"):
    """Registers (list of uint16) that hold value of type_ in byte order.

    ABCD: big-endian registers, most significant first; CDAB: register order
    reversed; BADC: bytes swapped inside each register; DCBA: both. For 64-bit
    values over four registers the same rule holds (CDAB = [GH, EF, CD, AB]).
    float32 123.456 -> ABCD [0x42F6,0xE979] CDAB [0xE979,0x42F6]
                       BADC [0xF642,0x79E9] DCBA [0x79E9,0xF642]."""
    raw = struct.pack(_STRUCT[type_], value)
    regs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        regs.reverse()
    if order in ("BADC", "DCBA"):
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    assert order in ("ABCD", "CDAB", "BADC", "DCBA"), order
    return regs


def encode_string(text, length):
    """length bytes, 2 per register, high byte first, NUL padded."""
    b = text.encode("ascii").ljust(length, b"\0")[:length]
    if len(b) % 2:
        b += b"\0"
    return [(b[i] << 8) | b[i + 1] for i in range(0, len(b), 2)]


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

class Proc:
    """A child process with its stderr (and stdout) in files below tmp_path.
    Stopped only by its PID."""

    def __init__(self, registry, name, argv, log_path, out_path=None, env=None):
        self.registry = registry
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.out_path = Path(out_path) if out_path else self.log_path
        self.env = env
        self.popen = None
        self.starts = 0
        registry.add(self)

    # -- lifecycle --
    def _spawn(self, stdout=None):
        assert not self.running(), f"{self.name} already running"
        log = open(self.log_path, "ab")
        out = stdout if stdout is not None else (
            log if self.out_path == self.log_path else open(self.out_path, "ab"))
        try:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=log, env=self.env)
        finally:
            log.close()
            if stdout is None and out is not log:
                out.close()
        self.starts += 1
        return self.popen

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll() if self.popen else None

    def signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout=10.0):
        """SIGTERM, wait up to timeout; SIGKILL if it did not exit. Returns the
        exit code (negative = killed by that signal), None if never started."""
        if self.popen is None:
            return None
        if self.running():
            self.signal(signal.SIGTERM)
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                raise AssertionError(
                    f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout}s; "
                    f"killed\n{self.diag()}")
        return self.popen.returncode

    def kill(self):
        """SIGKILL and reap."""
        if self.running():
            self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)
        return self.popen.returncode if self.popen else None

    # -- output --
    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def out_text(self):
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=25):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, regex, timeout=10.0):
        """Wait until the log matches regex (re.M); return the match."""
        rx = re.compile(regex, re.M)
        return wait_for(lambda: rx.search(self.log_text()), timeout,
                        f"{self.name} log to match /{regex}/", interval=0.05,
                        diag=self.registry.diag)

    def sanitizer_findings(self):
        found = []
        for path in {self.log_path, self.out_path}:
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if any(m in text for m in SANITIZER_MARKERS):
                found.append(f"--- {self.name}: {path} ---\n{text[-6000:]}")
        return found

    def diag(self):
        state = ("running" if self.running() else
                 f"exited rc={self.returncode}" if self.popen else "never started")
        return (f"[{self.name} pid={self.pid} {state}; log {self.log_path}]\n"
                f"{self.log_tail()}")


class ProcRegistry:
    """Every process a test started; all are stopped in teardown."""

    def __init__(self):
        self.procs = []

    def add(self, p):
        self.procs.append(p)

    def diag(self):
        return "\n".join(p.diag() for p in self.procs)

    def assert_alive(self, *procs):
        for p in procs or self.procs:
            if p.popen is not None and not p.running():
                pytest.fail(f"{p.name} died unexpectedly\n{p.diag()}", pytrace=False)

    def stop_all(self):
        errors = []
        # agents first (they may still want to publish "offline"), broker last
        order = sorted(self.procs, key=lambda p: 0 if isinstance(p, Agent) else
                       2 if isinstance(p, Broker) else 1)
        for p in order:
            try:
                if p.running():
                    p.terminate(timeout=10)
            except AssertionError as e:
                errors.append(str(e))
            except Exception as e:  # never leave a process behind
                errors.append(f"{p.name}: {e!r}")
                try:
                    p.kill()
                except Exception:
                    pass
        return errors

    def sanitizer_findings(self):
        out = []
        for p in self.procs:
            out.extend(p.sanitizer_findings())
        return out


class Broker(Proc):
    """mosquitto on 127.0.0.1:port (anonymous, no persistence)."""

    def __init__(self, registry, tmp_path, port=None):
        self.port = port or free_port()
        self.conf = Path(tmp_path) / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # a slow test subscriber must not lose messages during a backlog drain
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            "log_timestamp true\n")
        super().__init__(registry, f"mosquitto:{self.port}",
                         [MOSQUITTO, "-c", self.conf],
                         Path(tmp_path) / f"mosquitto-{self.port}.log")

    def start(self, timeout=10.0):
        self._spawn()
        wait_for(lambda: port_open(self.port) or not self.running(), timeout,
                 f"mosquitto to listen on {self.port}")
        if not self.running():
            pytest.fail(f"mosquitto exited\n{self.diag()}", pytrace=False)
        return self

    def stop(self, timeout=10.0):
        return self.terminate(timeout)


class Agent(Proc):
    """`mbgate run -c CONF`; stderr in tmp_path/<name>.log."""

    def __init__(self, registry, binary, conf, tmp_path, name="agent", args=()):
        self.conf = Path(conf)
        super().__init__(registry, name,
                         [binary, "run", "-c", self.conf, *args],
                         Path(tmp_path) / f"{name}.log",
                         Path(tmp_path) / f"{name}.out")

    def start(self):
        self._spawn()
        return self

    def stop(self, timeout=10.0):
        """SIGTERM; the exit code (raises if it takes longer than timeout)."""
        return self.terminate(timeout)

    def kill9(self):
        return self.kill()


class Sim(Proc):
    """`mbgate sim -c CONF --listen 127.0.0.1:PORT`."""

    def __init__(self, registry, binary, conf, tmp_path, port=None, name="sim"):
        self.port = port or free_port()
        self.conf = Path(conf)
        super().__init__(registry, name,
                         [binary, "sim", "-c", self.conf, "--listen",
                          f"127.0.0.1:{self.port}"],
                         Path(tmp_path) / f"{name}.log",
                         Path(tmp_path) / f"{name}.out")

    def start(self, timeout=10.0):
        self._spawn()
        wait_for(lambda: port_open(self.port) or not self.running(), timeout,
                 f"mbgate sim to listen on {self.port}", diag=self.diag)
        if not self.running():
            pytest.fail(f"mbgate sim exited\n{self.diag()}", pytrace=False)
        return self

    def stop(self, timeout=10.0):
        return self.terminate(timeout)


class PymodbusPLC(Proc):
    """An independent Modbus TCP server (pymodbus_plc.py in its own process).

    All four tables hold 65536 values at 0-based addresses; any unit id is
    answered. Values are set/read through the script's control channel
    (works for input registers and discrete inputs too), or with any Modbus
    client on .port. restart via stop()/kill() then start(): same port."""

    def __init__(self, registry, tmp_path, init=None, port=0, name="plc"):
        self.tmp_path = Path(tmp_path)
        self.port = port
        self.control_port = None
        self._ctl = None
        self.init_path = self.tmp_path / f"{name}-init.json"
        self.init_path.write_text(json.dumps(init or {}))
        super().__init__(registry, name, [], self.tmp_path / f"{name}.log")

    def start(self, timeout=15.0):
        self.argv = [PYTHON, str(HERE / "pymodbus_plc.py"), "--host", "127.0.0.1",
                     "--port", str(self.port), "--init", str(self.init_path)]
        self._close_ctl()
        if self.popen is not None and self.popen.stdout:
            self.popen.stdout.close()
        p = self._spawn(stdout=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                pytest.fail(f"pymodbus PLC did not become ready\n{self.diag()}",
                            pytrace=False)
            r, _, _ = select.select([p.stdout], [], [], min(left, 0.2))
            if r:
                chunk = os.read(p.stdout.fileno(), 256)
                if not chunk:
                    continue
                line += chunk
        m = re.match(rb"READY modbus=(\d+) control=(\d+)", line)
        assert m, f"unexpected PLC banner {line!r}"
        self.port = int(m.group(1))
        self.control_port = int(m.group(2))
        return self

    def stop(self, timeout=10.0):
        self._close_ctl()
        return self.terminate(timeout)

    def kill(self):
        self._close_ctl()
        return super().kill()

    # -- control channel --
    def _close_ctl(self):
        if self._ctl:
            try:
                self._ctl[0].close()
                self._ctl[1].close()
            except OSError:
                pass
        self._ctl = None

    def _call(self, **req):
        if self._ctl is None:
            s = socket.create_connection(("127.0.0.1", self.control_port), timeout=5)
            self._ctl = (s, s.makefile("rwb"))
        f = self._ctl[1]
        f.write((json.dumps(req) + "\n").encode())
        f.flush()
        line = f.readline()
        if not line:
            self._close_ctl()
            raise AssertionError(f"PLC control channel closed\n{self.diag()}")
        rep = json.loads(line)
        if not rep.get("ok"):
            raise AssertionError(f"PLC control {req}: {rep.get('error')}")
        return rep

    def set(self, table, addr, values):
        """Set values (list, or one value) starting at 0-based addr."""
        if not isinstance(values, (list, tuple)):
            values = [values]
        self._call(op="set", table=table, addr=addr, values=list(values))

    def get(self, table, addr, count=1):
        return self._call(op="get", table=table, addr=addr, count=count)["values"]

    def stats(self):
        """{"reads": {fc: n}, "writes": {fc: n}, "requests": [[fc, addr, count]]}"""
        rep = self._call(op="stats")
        rep.pop("ok")
        return rep

    def reset_stats(self):
        self._call(op="reset_stats")


# --------------------------------------------------------------------------
# MQTT
# --------------------------------------------------------------------------

Msg = namedtuple("Msg", "topic payload retain qos time properties")

_client_seq = [0]


class MqttCollector:
    """A paho client subscribed to topic_filter at QoS 1, collecting every
    message as Msg(topic, payload bytes, retain, qos, time, properties).
    Reconnects (and resubscribes) on its own when the broker restarts."""

    def __init__(self, port, topic_filter="#", protocol="3.1.1", client_id=None,
                 diag=None, connect_timeout=10.0):
        _client_seq[0] += 1
        self.port = port
        self.topic_filter = topic_filter
        self.v5 = str(protocol) == "5"
        self.client_id = client_id or f"itest-col-{os.getpid()}-{_client_seq[0]}"
        self.diag = diag
        self._msgs = []
        self._count = 0  # messages ever received (clear() does not reset it)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        if self.v5:
            self.client = mqtt.Client(client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(client_id=self.client_id, clean_session=True,
                                      protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(connect_timeout):
            self.close()
            pytest.fail(f"MQTT collector could not subscribe on port {port}",
                        pytrace=False)

    # paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        client.subscribe(self.topic_filter, qos=1)

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self._subscribed.set()

    def _on_message(self, client, userdata, m):
        msg = Msg(m.topic, bytes(m.payload), bool(m.retain), m.qos, time.time(),
                  getattr(m, "properties", None))
        with self._cond:
            self._msgs.append(msg)
            self._count += 1
            self._cond.notify_all()

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # queries
    def mark(self):
        """Index to pass as after= to ignore what arrived so far."""
        with self._cond:
            return len(self._msgs)

    def clear(self):
        with self._cond:
            self._msgs.clear()

    def messages(self, topic=None, after=0):
        """Msgs on topic (exact, or an MQTT filter with + / #), in arrival order."""
        with self._cond:
            msgs = self._msgs[after:]
        if topic is None:
            return list(msgs)
        return [m for m in msgs if _topic_match(topic, m.topic)]

    def payloads(self, topic, after=0):
        """Decoded JSON payloads on topic."""
        return [decode(m) for m in self.messages(topic, after)]

    def wait_message(self, topic, predicate=None, timeout=10.0, after=0, raw=False):
        """First message on topic (from index after) whose decoded JSON
        satisfies predicate; returns the decoded JSON (the Msg if raw)."""
        found = self._wait(lambda: [m for m in self.messages(topic, after)
                                    if predicate is None or predicate(decode(m))],
                           timeout, f"a message on {topic}"
                           + (" matching the predicate" if predicate else ""))
        return found[0] if raw else decode(found[0])

    def wait_messages(self, topic, n, predicate=None, timeout=10.0, after=0, raw=False):
        """The first n messages on topic (that satisfy predicate)."""
        found = self._wait(lambda: (lambda l: l if len(l) >= n else None)(
            [m for m in self.messages(topic, after)
             if predicate is None or predicate(decode(m))]),
            timeout, f"{n} messages on {topic}")
        found = found[:n]
        return found if raw else [decode(m) for m in found]

    def _wait(self, fn, timeout, desc):
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._count
            v = fn()
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._cond:
                if self._count == seen:
                    self._cond.wait(min(left, 0.2))
        topics = sorted({m.topic for m in self.messages()})
        msg = (f"timed out after {timeout:.1f}s waiting for {desc}; "
               f"topics seen: {topics[:40]}")
        recent = [f"  {m.topic} {m.payload[:200]!r}" for m in self.messages()[-10:]]
        msg += "\nlast messages:\n" + "\n".join(recent)
        if self.diag:
            msg += "\n" + self.diag()
        pytest.fail(msg, pytrace=False)


def decode(m):
    try:
        return json.loads(m.payload)
    except ValueError:
        raise AssertionError(f"payload on {m.topic} is not JSON: {m.payload[:300]!r}")


def _topic_match(flt, topic):
    if flt == topic:
        return True
    if "+" not in flt and "#" not in flt:
        return False
    return mqtt.topic_matches_sub(flt, topic)


def fetch_retained(port, topic, timeout=5.0, predicate=None, protocol="3.1.1"):
    """Connect a fresh subscriber and return the retained Msg on topic
    (retain flag set; matching predicate on the decoded JSON if given), or
    None if none arrives within timeout."""
    col = MqttCollector(port, topic, protocol=protocol)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in col.messages(topic):
                if m.retain and (predicate is None or predicate(decode(m))):
                    return m
            time.sleep(0.02)
        return None
    finally:
        col.close()


# --------------------------------------------------------------------------
# configuration (SPEC §3, libconfig syntax)
# --------------------------------------------------------------------------

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}L" if not -2**31 <= v < 2**31 else str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".eE") else r + ".0"
    if isinstance(v, (str, Path)):
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    raise TypeError(f"cannot render {v!r}")


def _inline(v):
    if isinstance(v, dict):
        return "{ " + " ".join(f"{k} = {_inline(x)};" for k, x in v.items()
                               if x is not None) + " }"
    if isinstance(v, (list, tuple)):
        return "( " + ", ".join(_inline(x) for x in v) + " )"
    return _scalar(v)


def _block(name, d, indent=""):
    lines = [f"{indent}{name} = {{"]
    for k, v in d.items():
        if v is None:
            continue
        if k == "tags" and isinstance(v, (list, tuple)):
            lines.append(f"{indent}  tags = (")
            for i, t in enumerate(v):
                sep = "," if i < len(v) - 1 else ""
                lines.append(f"{indent}    {_inline(t)}{sep}")
            lines.append(f"{indent}  );")
        else:
            lines.append(f"{indent}  {k} = {_inline(v)};")
    lines.append(f"{indent}}};")
    return lines


def render_config(sections, devices):
    """libconfig text: one group per section, then devices = ( ... ) with a
    device group per entry and each tag on a line of its own."""
    lines = ["# written by tests/integration/conftest.py"]
    for name, body in sections.items():
        if body is None:
            continue
        lines.extend(_block(name, body))
    lines.append("devices = (")
    for i, dev in enumerate(devices):
        block = _block("", dev, "  ")
        block[0] = "  {"
        block[-1] = "  }" + ("," if i < len(devices) - 1 else "")
        lines.extend(block)
    lines.append(");")
    return "\n".join(lines) + "\n"


def _short_socket_path(tmp_path):
    p = Path(tmp_path) / "mbgate.sock"
    if len(str(p)) < 100:
        return p
    return Path(tempfile.mkdtemp(prefix="mbg-")) / "mbgate.sock"


def write_config(tmp_path, devices=(), broker_port=1883, filename="mbgate.conf",
                 **overrides):
    """Write an mbgate config below tmp_path and return its Path.

    Defaults: gateway id "itest", state_dir tmp_path/state, control socket
    tmp_path/mbgate.sock, mqtt 127.0.0.1:broker_port (keepalive 10, qos 1),
    status.publish_interval_s 5. overrides: section=dict merged into the
    defaults (a None value removes a key; section=None drops the section),
    e.g. mqtt={"layout": "device"}, setpoints={"enabled": False}."""
    tmp_path = Path(tmp_path)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    sections = {
        "gateway": {"id": GATEWAY_ID, "state_dir": str(state), "log_level": "info"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive": 10, "qos": 1},
        "control": {"socket": str(_short_socket_path(tmp_path))},
        "status": {"publish_interval_s": 5},
    }
    for name, body in overrides.items():
        if body is None:
            sections[name] = None
        elif name in sections and sections[name] is not None:
            merged = dict(sections[name])
            merged.update(body)
            sections[name] = {k: v for k, v in merged.items() if v is not None}
        else:
            sections[name] = dict(body)
    path = tmp_path / filename
    path.write_text(render_config(sections, list(devices)))
    return path


def tcp_device(name, port, tags, **kw):
    """A TCP device dict on 127.0.0.1:port polled every 100 ms."""
    d = {"name": name, "transport": "tcp", "host": "127.0.0.1", "port": port,
         "unit_id": 1, "poll_ms": 100, "timeout_ms": 1000, "retries": 1}
    d.update(kw)
    d["tags"] = list(tags)
    return d


def run_cli(binary, *args, timeout=30.0, env=None):
    """Run `mbgate ARGS...`; CompletedProcess with text stdout/stderr."""
    return subprocess.run([str(binary), *map(str, args)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=env)


def control_socket(conf):
    """The control.socket path of a config written by write_config."""
    return re.search(r'socket = "([^"]+)"', Path(conf).read_text()).group(1)


def agent_status(binary, conf):
    """`mbgate status --json` of the agent running conf, parsed."""
    r = run_cli(binary, "status", "--json", "--socket", control_socket(conf), timeout=10)
    assert r.stdout, f"mbgate status --json: {r.stderr}"
    return json.loads(r.stdout)


def assert_clean_stderr(text, what="mbgate"):
    for m in SANITIZER_MARKERS:
        assert m not in text, f"{what}: sanitizer report:\n{text[-6000:]}"


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def _check_mbgate_bin():
    b = os.environ.get("MBGATE_BIN")
    if not b:
        return "MBGATE_BIN is not set (run the suite via `make integration`)"
    if not (Path(b).is_file() and os.access(b, os.X_OK)):
        return f"MBGATE_BIN={b} is not an executable file (build it first: make)"
    return None


def pytest_sessionstart(session):
    """No binary = the suite fails loudly (exit status 1), never skips."""
    err = _check_mbgate_bin()
    if err and not session.config.option.collectonly:
        pytest.exit("mbgate integration tests: " + err, returncode=1)


@pytest.fixture(scope="session")
def mbgate_bin():
    """Absolute path of the binary under test ($MBGATE_BIN). Missing = the
    suite fails (never skips)."""
    err = _check_mbgate_bin()
    if err:
        pytest.fail(err, pytrace=False)
    return Path(os.environ["MBGATE_BIN"]).resolve()


@pytest.fixture
def procs(mbgate_bin):
    """Registry of the test's processes; teardown stops every one by PID and
    fails the test on sanitizer reports in their stderr."""
    reg = ProcRegistry()
    yield reg
    errors = reg.stop_all()
    findings = reg.sanitizer_findings()
    if findings:
        pytest.fail("sanitizer report in a child's stderr:\n" + "\n".join(findings),
                    pytrace=False)
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


@pytest.fixture
def broker(procs, tmp_path):
    """A running mosquitto on a free port: .port, stop(), start(), kill()."""
    return Broker(procs, tmp_path).start()


@pytest.fixture
def make_collector(broker, procs):
    """make_collector(topic_filter="#", protocol="3.1.1") -> MqttCollector on
    the test broker; all are closed in teardown."""
    made = []

    def make(topic_filter="#", protocol="3.1.1", port=None, **kw):
        c = MqttCollector(port or broker.port, topic_filter, protocol=protocol,
                          diag=procs.diag, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def collector(make_collector):
    """A collector subscribed to "#" (MQTT 3.1.1)."""
    return make_collector()


@pytest.fixture
def make_agent(procs, mbgate_bin, tmp_path):
    """make_agent(conf, name="agent") -> Agent (not yet started)."""
    def make(conf, name="agent", args=()):
        return Agent(procs, mbgate_bin, conf, tmp_path, name=name, args=args)
    return make


@pytest.fixture
def make_sim(procs, mbgate_bin, tmp_path):
    """make_sim(conf, port=None, name="sim") -> Sim (not yet started)."""
    def make(conf, port=None, name="sim"):
        return Sim(procs, mbgate_bin, conf, tmp_path, port=port, name=name)
    return make


@pytest.fixture
def make_plc(procs, tmp_path):
    """make_plc(init=None, port=0, name="plc") -> started PymodbusPLC."""
    def make(init=None, port=0, name="plc"):
        return PymodbusPLC(procs, tmp_path, init=init, port=port, name=name).start()
    return make
