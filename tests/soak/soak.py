#!/usr/bin/python3
"""Soak test for mbgate under faults (issue #10).

    /usr/bin/python3 tests/soak/soak.py --duration 1800 [--bin build/mbgate]
    make soak DURATION=1800

One `mbgate run` polls 4 devices (50 tags each, 200 in all, 10 counter tags
per device, polled every 100/200/300/500 ms), each served by its own
`mbgate sim` behind a TCP proxy of this script, and publishes to a real
mosquitto (persistent, so that a broker restart loses nothing that it
acknowledged). A `mosquitto_sub` with a persistent session records every
message. For DURATION seconds, at random (bounded in count and in time,
loopback only):

  * the broker is restarted (SIGTERM, down 2-10 s, same port);
  * a PLC (sim) is killed with SIGKILL and revived after 2-15 s (counters
    restart at a new base, epoch * 1,000,000, so incarnations stay apart);
  * a link is black-holed for 3-20 s: the proxy stops forwarding the
    agent's requests without closing anything (answers to requests that
    already went through still come back), then drops the held connections;
  * bursts of garbage setpoints: random bytes, 1 MB payloads, wrong types,
    unknown tags, objects with bad members, valid values on writable tags.

At the end every link is black-holed (the agent can take no new sample),
the outbox drains, the agent is stopped, and each sim's counters are read
directly (that read moves them by one: the last value the agent could have
taken is what it reads minus one). Reported: per counter tag samples taken
(counter increments the sim answered) vs distinct values delivered, holes,
duplicates; RSS and fd count of the agent after warm-up and at the end;
agent restarts/crashes. Exit status 0 only when the bar holds: zero lost
samples, RSS growth < 1 MB, fd count flat, no agent crash.
"""
import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
GW = "soak"
PREFIX = "mbgate/" + GW
EPOCH = 1_000_000          # counter base step per sim incarnation
NDEV = 4
POLLS = [100, 200, 300, 500]
COUNTERS = 10              # counter tags per device


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------------
# the tag map (SPEC §3)
# ---------------------------------------------------------------------------

def counter_tags():
    """(name, table, address, type, order, regs)"""
    t = []
    for i in range(6):                                   # holding 0..11
        t.append((f"c{i}", "holding", 2 * i, "uint32", "ABCD", 2))
    t.append(("c6", "holding", 20, "uint64", "CDAB", 4))
    t.append(("c7", "holding", 24, "uint64", "DCBA", 4))
    t.append(("c8", "input", 0, "int32", "BADC", 2))
    t.append(("c9", "input", 2, "uint32", "CDAB", 2))
    assert len(t) == COUNTERS
    return t


def device_tags(epoch):
    tags = []
    for name, table, addr, typ, order, _ in counter_tags():
        tags.append({"name": name, "table": table, "address": addr, "type": typ,
                     "byte_order": order, "sim": "counter", "sim_value": float(epoch * EPOCH)})
    for i in range(27):                                  # drifting analog values
        typ = "float32" if i % 3 else "int16"
        d = {"name": f"a{i}", "table": "holding" if i % 2 else "input",
             "address": 100 + 2 * i, "type": typ, "min": 0.0, "max": 1000.0,
             "deadband": 50.0, "sim": "drift"}
        if typ == "int16":
            d["scale"] = 0.1
            d["max"] = 3000.0
        tags.append(d)
    for i in range(6):
        tags.append({"name": f"b{i}", "table": "coil", "address": i, "type": "bool",
                     "deadband": 0.0, "sim": "toggle"})
    for i in range(2):
        tags.append({"name": f"di{i}", "table": "discrete", "address": i, "type": "bool",
                     "deadband": 0.0, "sim": "toggle"})
    tags.append({"name": "serial_no", "table": "holding", "address": 300, "type": "string",
                 "length": 16, "poll_ms": 5000, "sim": "fixed", "sim_value": "SOAK-0001",
                 "deadband": 0.0})
    tags.append({"name": "sp_u16", "table": "holding", "address": 400, "type": "uint16",
                 "writable": True, "min": 0.0, "max": 1500.0, "deadband": 0.0,
                 "sim": "fixed", "sim_value": 750.0})
    tags.append({"name": "sp_f32", "table": "holding", "address": 410, "type": "float32",
                 "writable": True, "min": -40.0, "max": 125.0, "deadband": 0.0,
                 "sim": "fixed", "sim_value": 20.0})
    tags.append({"name": "sp_coil", "table": "coil", "address": 100, "type": "bool",
                 "writable": True, "deadband": 0.0, "sim": "fixed", "sim_value": False})
    tags.append({"name": "sp_str", "table": "holding", "address": 420, "type": "string",
                 "length": 8, "writable": True, "deadband": 0.0, "sim": "fixed",
                 "sim_value": "init"})
    assert len(tags) == 50, len(tags)
    return tags


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".eE") else r + ".0"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _inline(v):
    if isinstance(v, dict):
        return "{ " + " ".join(f"{k} = {_inline(x)};" for k, x in v.items()) + " }"
    return _scalar(v)


def render(sections, devices):
    out = []
    for name, body in sections.items():
        out.append(f"{name} = {_inline(body)};")
    out.append("devices = (")
    for i, d in enumerate(devices):
        tags = d["tags"]
        head = " ".join(f"{k} = {_scalar(v)};" for k, v in d.items() if k != "tags")
        out.append("  { " + head + " tags = (")
        out.append(",\n".join("    " + _inline(t) for t in tags))
        out.append("  ) }" + ("," if i < len(devices) - 1 else ""))
    out.append(");")
    return "\n".join(out) + "\n"


def device(i, port, epoch=0):
    return {"name": f"d{i}", "transport": "tcp", "host": "127.0.0.1", "port": port,
            "unit_id": 1, "poll_ms": POLLS[i % len(POLLS)], "timeout_ms": 1500,
            "retries": 1, "tags": device_tags(epoch)}


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

class Proc:
    def __init__(self, name, argv, logpath):
        self.name, self.argv, self.logpath = name, [str(a) for a in argv], Path(logpath)
        self.p = None

    def start(self):
        with open(self.logpath, "ab") as f:
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f,
                                      stderr=subprocess.STDOUT)
        return self

    def running(self):
        return self.p is not None and self.p.poll() is None

    @property
    def pid(self):
        return self.p.pid

    def signal(self, sig):
        if self.running():
            os.kill(self.p.pid, sig)

    def stop(self, timeout=15):
        if not self.p:
            return None
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {timeout}s: SIGKILL")
                self.p.kill()
                self.p.wait(10)
        return self.p.returncode

    def kill(self):
        if self.running():
            self.p.kill()
        if self.p:
            self.p.wait(10)


class Broker(Proc):
    def __init__(self, tmp):
        self.port = free_port()
        d = tmp / "mosquitto"
        d.mkdir(exist_ok=True)
        conf = tmp / "mosquitto.conf"
        conf.write_text(
            # user root: as root, mosquitto would switch to "mosquitto", which
            # cannot write the persistence file below our 0700 temp dir
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {d}/\nautosave_interval 0\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            "log_timestamp true\n")
        super().__init__("mosquitto", [MOSQUITTO, "-c", conf], tmp / "mosquitto.log")

    def start(self):
        super().start()
        wait_until(lambda: port_open(self.port) or not self.running(), 15, "mosquitto")
        if not self.running():
            raise RuntimeError("mosquitto exited")
        return self


class Sim(Proc):
    def __init__(self, tmp, binary, i, epoch):
        self.port = free_port()
        self.i = i
        self.epoch = epoch
        conf = tmp / f"sim-d{i}-e{epoch}.conf"
        conf.write_text(render({"gateway": {"id": "sim"}}, [device(i, self.port, epoch)]))
        super().__init__(f"sim-d{i}", [binary, "sim", "-c", conf, "--listen",
                                       f"127.0.0.1:{self.port}"], tmp / f"sim-d{i}.log")

    def start(self):
        super().start()
        wait_until(lambda: port_open(self.port) or not self.running(), 15, self.name)
        if not self.running():
            raise RuntimeError(f"{self.name} exited")
        return self


# ---------------------------------------------------------------------------
# a TCP proxy that can black-hole a link
# ---------------------------------------------------------------------------

class BlackholeProxy:
    """127.0.0.1:port -> 127.0.0.1:target (the target can change while a sim
    is revived on a new port). hole(): requests from the agent are no longer
    read (they stay in the kernel buffer), nothing is closed; answers still
    flow back. unhole(): the held connections are dropped unforwarded (a
    real partition longer than the agent's timeout ends the same way) and
    new ones are served again."""

    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.holed = False
        self.pairs = []          # [agent_sock, plc_sock, held]
        self.stopped = False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(32)
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _wake(self):
        os.write(self.wake_w, b"x")

    def hole(self):
        with self.lock:
            self.holed = True
            for p in self.pairs:
                p[2] = True
        self._wake()

    def unhole(self):
        with self.lock:
            self.holed = False
            held = [p for p in self.pairs if p[2]]
            self.pairs = [p for p in self.pairs if not p[2]]
        for a, b, _ in held:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
        self._wake()

    def retarget(self, target):
        with self.lock:
            self.target = target

    def close(self):
        self.stopped = True
        self._wake()
        self.thread.join(5)

    def _drop(self, p):
        with self.lock:
            if p in self.pairs:
                self.pairs.remove(p)
        for s in p[:2]:
            try:
                s.close()
            except OSError:
                pass

    def _run(self):
        while not self.stopped:
            with self.lock:
                pairs = list(self.pairs)
                holed = self.holed
            rd = [self.ls, self.wake_r]
            for p in pairs:
                if not p[2]:
                    rd.append(p[0])          # agent -> plc only while not held
                rd.append(p[1])              # plc -> agent always
            try:
                r, _, _ = select.select(rd, [], [], 0.5)
            except (OSError, ValueError):
                continue                     # a socket closed under us: retry
            if self.wake_r in r:
                os.read(self.wake_r, 4096)
            if self.ls in r:
                a, _ = self.ls.accept()
                with self.lock:
                    target = self.target
                try:
                    b = socket.create_connection(("127.0.0.1", target), timeout=2)
                    b.settimeout(None)
                except OSError:
                    a.close()                # PLC down: refused, as it would be
                    continue
                with self.lock:
                    self.pairs.append([a, b, self.holed])
            for p in pairs:
                for src, dst in ((p[0], p[1]), (p[1], p[0])):
                    if src not in r:
                        continue
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(p)
                        break
                    try:
                        dst.sendall(data)
                    except OSError:
                        self._drop(p)
                        break


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------

def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def agent_status(binary, sock):
    r = subprocess.run([binary, "status", "--json", "--socket", sock],
                       capture_output=True, text=True, timeout=20)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def read_counters_direct(port):
    """Read every counter of one sim directly (moves them by one)."""
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    if not c.connect():
        raise RuntimeError(f"cannot connect to sim on {port}")
    try:
        hold = c.read_holding_registers(0, 28, slave=1).registers
        inp = c.read_input_registers(0, 4, slave=1).registers
    finally:
        c.close()
    out = {}
    for name, table, addr, typ, order, n in counter_tags():
        regs = (hold if table == "holding" else inp)[addr:addr + n]
        if order in ("CDAB", "DCBA"):
            regs = regs[::-1]
        if order in ("BADC", "DCBA"):
            regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
        raw = b"".join(struct.pack(">H", r) for r in regs)
        fmt = {"uint32": ">I", "int32": ">i", "uint64": ">Q"}[typ]
        out[name] = struct.unpack(fmt, raw)[0]
    return out


class Recorder:
    """Tails mosquitto_sub's output file: every message on P/#."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.buf = b""
        self.values = {}       # (dev, tag) -> list of (v, hist)
        self.results = 0
        self.bad_json = []
        self.messages = 0
        self.status_msgs = 0

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return
        self.off += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line):
        if not line.strip():
            return
        topic, _, payload = line.partition(b" ")
        topic = topic.decode(errors="replace")
        self.messages += 1
        parts = topic.split("/")
        if len(parts) < 3:
            return
        rest = parts[2:]
        if rest[-1] == "result":
            self.results += 1
            return
        if rest[-1] == "set":
            return             # our own garbage, echoed by the subscription
        try:
            doc = json.loads(payload)
        except ValueError:
            self.bad_json.append((topic, payload[:200]))
            return
        if len(rest) == 1 or rest[-1] == "status":
            self.status_msgs += 1
            return
        if len(rest) == 2 and rest[1].startswith("c") and rest[1][1:].isdigit():
            v = doc.get("v") if isinstance(doc, dict) else None
            if isinstance(v, int):
                self.values.setdefault((rest[0], rest[1]), []).append((v, bool(doc.get("hist"))))


# ---------------------------------------------------------------------------
# garbage setpoints
# ---------------------------------------------------------------------------

def garbage_payloads(rng):
    return [
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        b"x" * (1024 * 1024),                                    # 1 MB
        b"{" * 5000,
        b'{"v":' + b"9" * 4000 + b"}",
        b"null", b"[1,2,3]", b'{"v":{"nested":true}}', b'{"value":42}',
        b'{"v":1,"id":' + b'"' + b"i" * 300 + b'"}',
        b'{"v":1,"ts":-5}', b'{"v":1,"ts":1}',                  # stale
        b"\xff\xfe\xfd", b"\"\\ud800\"", b"1e400", b"NaN", b"",
        b'"' + b"s" * 300 + b'"', b"true", b"-1", b"65536", b"3.7",
        b'{"v":700,"id":"ok-%d"}' % rng.randint(0, 10 ** 6),     # valid for sp_u16
        b'{"v":21.5,"id":"f","ts":%d}' % int(time.time() * 1000),
        b'"abcdefgh"', b'"abcdefghi"',
    ]


def publish_garbage(port, rng, n):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id=f"soak-garbage-{rng.randint(0, 10 ** 9)}", clean_session=True)
    try:
        c.connect("127.0.0.1", port, 30)
    except OSError:
        return 0
    c.loop_start()
    sent = 0
    try:
        payloads = garbage_payloads(rng)
        tags = ["sp_u16", "sp_f32", "sp_coil", "sp_str", "c0", "a1", "nope", "serial_no"]
        for _ in range(n):
            dev = f"d{rng.randrange(NDEV)}" if rng.random() < 0.9 else "nodev"
            topic = f"{PREFIX}/{dev}/{rng.choice(tags)}/set"
            info = c.publish(topic, rng.choice(payloads), qos=rng.choice([0, 1]))
            sent += 1
            time.sleep(0.02)
        info.wait_for_publish(timeout=10)
    finally:
        c.loop_stop()
        c.disconnect()
    return sent


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", 1800)),
                    help="seconds of faults (default 1800, or $DURATION)")
    ap.add_argument("--bin", default=os.environ.get("MBGATE_BIN", str(ROOT / "build/mbgate")))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    binary = str(Path(args.bin).resolve())
    seed = args.seed if args.seed is not None else random.randrange(10 ** 6)
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="mbgate-soak-"))
    log(f"soak: {args.duration:.0f}s of faults, seed {seed}, binary {binary}, dir {tmp}")

    procs = []
    proxies = []
    sub = None
    try:
        broker = Broker(tmp).start()
        procs.append(broker)
        subout = tmp / "sub.out"
        # line-buffered, persistent session (QoS 1), our own /set garbage filtered out
        sub = Proc("mosquitto_sub", ["stdbuf", "-oL", MOSQUITTO_SUB, "-h", "127.0.0.1",
                                     "-p", broker.port, "-i", "soak-recorder", "-c",
                                     "-q", "1", "-v", "-t", f"{PREFIX}/#",
                                     "-T", f"{PREFIX}/+/+/set"], subout)
        sub.start()
        procs.append(sub)
        time.sleep(0.5)

        epochs = [0] * NDEV
        sims = [Sim(tmp, binary, i, 0).start() for i in range(NDEV)]
        procs.extend(sims)
        proxies = [BlackholeProxy(s.port) for s in sims]
        state = tmp / "state"
        state.mkdir()
        sock = str(tmp / "mbgate.sock")
        conf = tmp / "mbgate.conf"
        conf.write_text(render({
            "gateway": {"id": GW, "state_dir": str(state), "log_level": "info"},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 10, "qos": 1},
            "setpoints": {"enabled": True, "max_age_s": 30, "max_rate": 10},
            "control": {"socket": sock},
            "status": {"publish_interval_s": 10},
        }, [device(i, proxies[i].port) for i in range(NDEV)]))
        agent = Proc("agent", [binary, "run", "-c", conf], tmp / "agent.log")
        agent.start()
        procs.append(agent)
        agent_restarts = []
        rec = Recorder(subout)

        wait_until(lambda: (rec.poll(), len(rec.values) == NDEV * COUNTERS)[1], 60,
                   "every counter tag to publish")
        log(f"all {NDEV * COUNTERS} counter tags publishing; warm-up {args.warmup:.0f}s")
        time.sleep(args.warmup)
        rss0, fd0 = rss_kb(agent.pid), fd_count(agent.pid)
        log(f"agent pid {agent.pid}: RSS {rss0} kB, {fd0} fds after warm-up")

        faults = {"broker_restart": 0, "plc_kill": 0, "blackhole": 0, "garbage_msgs": 0}
        t_end = time.monotonic() + args.duration
        next_sample = time.monotonic() + 60
        samples = []
        status_asks = status_failed = 0
        while time.monotonic() < t_end:
            rec.poll()
            if not agent.running():
                rc = agent.p.returncode
                agent_restarts.append((time.time(), rc))
                log(f"AGENT DIED rc={rc}; restarting")
                agent.start()
            if time.monotonic() >= next_sample:
                next_sample += 60
                st = agent_status(binary, sock)
                status_asks += 1
                if st is None:
                    status_failed += 1
                pend = st.get("outbox", {}).get("pending") if st else None
                samples.append((round(args.duration - (t_end - time.monotonic())),
                                rss_kb(agent.pid), fd_count(agent.pid), pend))
                log(f"t={samples[-1][0]}s RSS {samples[-1][1]} kB fds {samples[-1][2]} "
                    f"outbox pending {pend} msgs {rec.messages}")
            kind = rng.choice(["broker", "plc", "hole", "garbage", "quiet"])
            left = t_end - time.monotonic()
            if kind == "broker":
                down = rng.uniform(2, 10)
                log(f"fault: broker restart, down {down:.1f}s")
                broker.stop()
                time.sleep(min(down, max(left, 0)))
                broker.start()
                faults["broker_restart"] += 1
            elif kind == "plc":
                i = rng.randrange(NDEV)
                down = rng.uniform(2, 15)
                log(f"fault: kill sim d{i} (epoch {epochs[i]}), down {down:.1f}s")
                sims[i].kill()
                time.sleep(min(down, max(left, 0)))
                epochs[i] += 1
                sims[i] = Sim(tmp, binary, i, epochs[i]).start()
                procs.append(sims[i])
                proxies[i].retarget(sims[i].port)
                faults["plc_kill"] += 1
            elif kind == "hole":
                i = rng.randrange(NDEV)
                dur = rng.uniform(3, 20)
                log(f"fault: black-hole link d{i} for {dur:.1f}s")
                proxies[i].hole()
                time.sleep(min(dur, max(left, 0)))
                proxies[i].unhole()
                faults["blackhole"] += 1
            elif kind == "garbage":
                n = rng.randint(5, 40)
                faults["garbage_msgs"] += publish_garbage(broker.port, rng, n)
            rec.poll()
            time.sleep(rng.uniform(5, 30) if kind != "quiet" else rng.uniform(10, 40))

        # ---- wind down: no new samples, drain, stop, read the sims
        log("faults over: black-holing every link, draining the outbox")
        for p in proxies:
            p.hole()
        # A rejected setpoint with invalid UTF-8 (our garbage) leaves the
        # control socket's status unbuildable until the next setpoint (bug
        # reported in issue #10): one well-formed command (refused with
        # device_down, every link is black-holed) makes it readable again.
        try:
            import paho.mqtt.client as mqtt
            c = mqtt.Client(client_id="soak-reset", clean_session=True)
            c.connect("127.0.0.1", broker.port, 30)
            c.loop_start()
            c.publish(f"{PREFIX}/d0/sp_u16/set", b"700", qos=1).wait_for_publish(10)
            c.loop_stop()
            c.disconnect()
        except Exception as e:  # the drain check below still times out visibly
            log(f"could not send the reset setpoint: {e!r}")
        time.sleep(5)
        drained_at = None
        end = time.monotonic() + 300
        while time.monotonic() < end:
            rec.poll()
            if not agent.running():
                agent_restarts.append((time.time(), agent.p.returncode))
                log(f"AGENT DIED rc={agent.p.returncode} while draining; restarting")
                agent.start()
            st = agent_status(binary, sock)
            if st and st.get("outbox", {}).get("pending") == 0:
                drained_at = time.monotonic()
                break
            time.sleep(1)
        time.sleep(3)                       # the subscriber's last messages
        rss1, fd1 = rss_kb(agent.pid), fd_count(agent.pid)
        st = agent_status(binary, sock)
        rc = agent.stop()
        rec.poll()
        time.sleep(1)
        rec.poll()
        log(f"agent stopped rc={rc}; drained={'yes' if drained_at else 'NO'}")

        last_taken = {}
        for i, s in enumerate(sims):
            vals = read_counters_direct(s.port)
            for tag, v in vals.items():
                last_taken[(f"d{i}", tag)] = v - 1

        # ---- analysis
        lost_total = taken_total = delivered_total = dup_total = 0
        rows = []
        for key in sorted(rec.values):
            vals = rec.values[key]
            dev = int(key[0][1:])
            seen = {}
            for v, h in vals:
                seen[v] = seen.get(v, 0) + 1
            by_epoch = {}
            for v in seen:
                by_epoch.setdefault(v // EPOCH, set()).add(v)
            taken = delivered = 0
            holes = []
            for e in range(epochs[dev] + 1):
                got = by_epoch.get(e, set())
                base = e * EPOCH
                top = last_taken[key] if e == epochs[dev] else (max(got) if got else base)
                # the last incarnation's top is known exactly; a killed one's
                # is the last delivered value (what it answered after that
                # died with it)
                taken += top - base
                delivered += len(got)
                missing = [x for x in range(base + 1, top + 1) if x not in got]
                holes.extend(missing)
            dups = sum(c - 1 for c in seen.values())
            rows.append((key, taken, delivered, len(holes), dups, holes[:8]))
            taken_total += taken
            delivered_total += delivered
            lost_total += len(holes)
            dup_total += dups

        print()
        print("=" * 78)
        print(f"soak summary (seed {seed}, {args.duration:.0f}s of faults, dir {tmp})")
        print(f"faults: {faults}")
        print(f"messages recorded: {rec.messages}, setpoint results: {rec.results}, "
              f"non-JSON payloads: {len(rec.bad_json)}")
        print(f"{'tag':12} {'taken':>8} {'delivered':>9} {'lost':>6} {'dups':>6}  first holes")
        for key, taken, delivered, nh, dups, h in rows:
            print(f"{key[0] + '/' + key[1]:12} {taken:8} {delivered:9} {nh:6} {dups:6}  {h}")
        print(f"TOTAL        {taken_total:8} {delivered_total:9} {lost_total:6} {dup_total:6}")
        print(f"RSS: {rss0} kB after warm-up -> {rss1} kB at the end ({rss1 - rss0:+} kB)")
        print(f"fds: {fd0} after warm-up -> {fd1} at the end")
        print(f"RSS/fd/pending every minute: {samples}")
        print(f"agent restarts/crashes: {agent_restarts or 'none'}; final exit {rc}")
        print(f"`mbgate status` unavailable {status_failed} of {status_asks} times "
              "during the faults (see the UTF-8 status bug)")
        if st:
            print(f"final status: outbox {json.dumps(st.get('outbox'))} broker "
                  f"{json.dumps(st.get('broker'))}")
        for t, p in rec.bad_json[:5]:
            print(f"  non-JSON on {t}: {p!r}")
        ok = (lost_total == 0 and rss1 - rss0 < 1024 and fd1 <= fd0 and not agent_restarts
              and rc == 0 and drained_at is not None and not rec.bad_json
              and len(rows) == NDEV * COUNTERS)
        print("RESULT:", "PASS" if ok else "FAIL",
              "(bar: zero lost samples, RSS growth < 1 MB, flat fds, no crash, clean exit)")
        print("=" * 78)
        result = 0 if ok else 1
        return result
    finally:
        for p in proxies:
            p.close()
        for p in reversed(procs):
            try:
                p.stop(10)
            except Exception as e:  # never leave a process behind
                log(f"stopping {p.name}: {e!r}")
                p.kill()
        if not args.keep and locals().get("result") == 0:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
