#!/usr/bin/python3
"""mbgate benchmark (issue #11): `make bench` -> tests/bench/run.sh -> this.

Prints one table and writes build/bench/results.md (+ results.json with every
run). Every process it starts listens on a free 127.0.0.1 port, logs below
build/bench/run/, and is stopped by its PID. Runs are bounded in time.

Sections (see tests/bench/README.md):
  1  end-to-end throughput vs the broker's own limit (pubbench), tag and device layout
  2  CPU seconds per million samples and peak RSS at 10,000 tags / 20 devices
  3  backlog drain of 1,000,000 stored samples with live data flowing; outbox inserts/s
  4  setpoint round trip over MQTT (1,000 commands)
  5  read plan vs an independent DP optimum on a scattered 2,000-tag map
  6  Node-RED + node-red-contrib-modbus on the same workload as 1

Environment knobs: BENCH_REPS (3), BENCH_WINDOW_S (10), BENCH_WARM_S (4),
BENCH_DRAIN_SAMPLES (1000000), BENCH_DRAIN_TIMEOUT_S (400), BENCH_SKIP
(comma list of section numbers), BENCH_QUICK=1 (short windows, 1 rep),
MBGATE_BIN (build/mbgate).
"""
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import render_config, free_port, port_open  # noqa: E402

OUT = ROOT / "build" / "bench"
RUN = OUT / "run"
MBGATE = Path(os.environ.get("MBGATE_BIN", ROOT / "build" / "mbgate")).resolve()
MOSQUITTO = "/usr/sbin/mosquitto"
NODE_RED_DIR = OUT / "node-red"
PREFIX = "mbgate/bench"

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPS = int(os.environ.get("BENCH_REPS", "1" if QUICK else "3"))
WINDOW = float(os.environ.get("BENCH_WINDOW_S", "5" if QUICK else "10"))
WARM = float(os.environ.get("BENCH_WARM_S", "3" if QUICK else "4"))
DRAIN_N = int(os.environ.get("BENCH_DRAIN_SAMPLES", "200000" if QUICK else "1000000"))
DRAIN_TIMEOUT = float(os.environ.get("BENCH_DRAIN_TIMEOUT_S", "400"))
SKIP = {s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()}

NDEV = 20          # devices, as in the issue (10,000 tags across 20 devices)
NLINKS = 4         # simulator processes = mbgate links (threads), 5 devices each
SIM_TAGS = 1000    # counter tags served per simulated device
CLK = os.sysconf("SC_CLK_TCK")

results = {"runs": [], "meta": {}}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------
# processes (ours only, stopped by PID)
# --------------------------------------------------------------------------

class Procs:
    def __init__(self):
        self.live = []

    def start(self, name, argv, stdin=None, stdout=None, env=None, cwd=None):
        logf = open(RUN / f"{name}.log", "ab")
        out = stdout if stdout is not None else logf
        p = subprocess.Popen([str(a) for a in argv], stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=out, stderr=logf, env=env, cwd=cwd)
        logf.close()
        p.bench_name = name
        self.live.append(p)
        return p

    def stop(self, p, timeout=10.0):
        if p is None:
            return None
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            try:
                self.stop(p, 5)
            except Exception:
                pass


PROCS = Procs()


def cpu_ticks(pid):
    """utime + stime of pid (all threads), in clock ticks."""
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def vm_hwm_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def wait_until(pred, timeout, what, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------
# broker, subscriber, simulators, agent
# --------------------------------------------------------------------------

class Broker:
    """mosquitto on a free loopback port. Unlimited queue (nothing dropped),
    a 100-message window towards the subscriber (like the publishers'), and
    TCP_NODELAY on its sockets (without it Nagle + delayed ACK cap QoS 1 at a
    few thousand msg/s)."""

    def __init__(self, nodelay=True):
        self.port = free_port()
        conf = RUN / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 0\nmax_inflight_messages 100\n"
                        + ("set_tcp_nodelay true\n" if nodelay else "") +
                        "log_dest stderr\nlog_type error\nlog_type warning\n")
        self.p = PROCS.start(f"mosquitto-{self.port}", [MOSQUITTO, "-c", conf])
        wait_until(lambda: port_open(self.port) or self.p.poll() is not None, 10, "mosquitto")
        if self.p.poll() is not None:
            raise RuntimeError("mosquitto did not start; see " + str(RUN))

    def stop(self):
        PROCS.stop(self.p)


class Sub:
    """build/bench/countsub: counts messages/samples, live latency histogram."""

    def __init__(self, port, filters):
        argv = [OUT / "countsub", "-p", port]
        for f in filters:
            argv += ["-t", f]
        self.p = PROCS.start(f"countsub-{port}", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.p.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError(f"countsub: {line!r}")

    def cmd(self, c):
        self.p.stdin.write((c + "\n").encode())
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def stats(self):
        return self.cmd("stats")

    def quiesce(self, quiet=0.6, timeout=60):
        """Wait until nothing arrives for `quiet` seconds."""
        end = time.monotonic() + timeout
        last = self.stats()["msgs"]
        t_last = time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.2)
            n = self.stats()["msgs"]
            if n != last:
                last, t_last = n, time.monotonic()
            elif time.monotonic() - t_last >= quiet:
                return
        log("warning: subscriber still receiving after", timeout, "s")

    def stop(self):
        try:
            self.p.stdin.close()
        except Exception:
            pass
        PROCS.stop(self.p)


def counter_tags(n):
    return [{"name": f"t{i + 1:04d}", "table": "holding", "address": i, "type": "uint16",
             "sim": "counter"} for i in range(n)]


def device_names():
    return [f"d{i + 1:02d}" for i in range(NDEV)]


class Sims:
    """NLINKS `mbgate sim` processes, each serving NDEV/NLINKS devices with
    SIM_TAGS counter tags (unit ids 1..k). where[dev] = (port, unit)."""

    def __init__(self):
        self.where = {}
        self.procs = []
        names = device_names()
        per = math.ceil(NDEV / NLINKS)
        for li in range(NLINKS):
            port = free_port()
            devs = []
            for k, name in enumerate(names[li * per:(li + 1) * per]):
                self.where[name] = (port, k + 1)
                devs.append({"name": name, "transport": "tcp", "host": "127.0.0.1", "port": port,
                             "unit_id": k + 1, "tags": counter_tags(SIM_TAGS)})
            conf = RUN / f"sim-{li}.conf"
            conf.write_text(render_config({"gateway": {"id": "benchsim", "state_dir": str(RUN / "simstate")},
                                           "mqtt": {"host": "127.0.0.1", "port": 1}}, devs))
            p = PROCS.start(f"sim-{li}", [MBGATE, "sim", "-c", conf, "--listen", f"127.0.0.1:{port}"])
            self.procs.append(p)
        for port in {v[0] for v in self.where.values()}:
            wait_until(lambda: port_open(port), 15, f"sim on {port}")

    def cpu(self):
        return sum(cpu_ticks(p.pid) or 0 for p in self.procs)

    def stop(self):
        for p in self.procs:
            PROCS.stop(p)


_agent_seq = [0]


def agent_config(broker_port, sims, ntags, poll_ms, layout="tag", devices=None, extra=None,
                 state=None):
    _agent_seq[0] += 1
    n = _agent_seq[0]
    state = state or RUN / f"state-{n}"
    if state.exists() and not extra:
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    sock = RUN / f"a{n}.sock"
    sections = {
        "gateway": {"id": "bench", "state_dir": str(state), "log_level": "warning"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive": 30, "qos": 1,
                 "layout": layout},
        "control": {"socket": str(sock)},
        "status": {"publish_interval_s": 30},
        "setpoints": {"max_rate": 100000},
    }
    for k, v in (extra or {}).items():
        sections.setdefault(k, {}).update(v)
    devs = []
    for name in (devices or device_names()):
        port, unit = sims.where[name]
        devs.append({"name": name, "transport": "tcp", "host": "127.0.0.1", "port": port,
                     "unit_id": unit, "poll_ms": poll_ms, "timeout_ms": 1000, "retries": 1,
                     "tags": counter_tags(ntags)})
    conf = RUN / f"agent-{n}.conf"
    conf.write_text(render_config(sections, devs))
    return conf, state


class Agent:
    def __init__(self, conf, name="agent"):
        self.conf = conf
        self.p = PROCS.start(f"{name}-{conf.stem}", [MBGATE, "run", "-c", conf])

    def status(self):
        r = subprocess.run([str(MBGATE), "status", "--json", "-c", str(self.conf)],
                           capture_output=True, text=True, timeout=15)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def wait_connected(self, timeout=60):
        def ok():
            if self.p.poll() is not None:
                raise RuntimeError(f"agent exited rc={self.p.returncode}; see {RUN}")
            s = self.status()
            return s if s and s["broker"]["connected"] else None
        return wait_until(ok, timeout, "agent connected to the broker", 0.1)

    def cpu(self):
        return cpu_ticks(self.p.pid)

    def hwm_kb(self):
        return vm_hwm_kb(self.p.pid)

    def stop(self):
        return PROCS.stop(self.p, 20)


def slope(points):
    """Least-squares slope of [(t, y)]."""
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------

def measure_window(sub, procs_cpu, status_fn, window, sample_every=1.0):
    """Counts, CPU ticks and pending over a window. procs_cpu: {name: fn}."""
    s0 = sub.stats()
    c0 = {k: f() for k, f in procs_cpu.items()}
    st0 = status_fn() if status_fn else None
    pend = []
    t_start = time.monotonic()
    if st0:
        pend.append((0.0, st0["outbox"]["pending"]))
    sub.cmd("latreset")
    while time.monotonic() - t_start < window:
        time.sleep(min(sample_every, max(0.0, window - (time.monotonic() - t_start))))
        if status_fn and time.monotonic() - t_start < window - 0.05:
            st = status_fn()
            if st:
                pend.append((time.monotonic() - t_start, st["outbox"]["pending"]))
    s1 = sub.stats()
    c1 = {k: f() for k, f in procs_cpu.items()}
    st1 = status_fn() if status_fn else None
    lat = sub.cmd("lat")
    dt = s1["t"] - s0["t"]
    r = {"secs": dt, "msgs": s1["msgs"] - s0["msgs"], "samples": s1["samples"] - s0["samples"],
         "msg_rate": (s1["msgs"] - s0["msgs"]) / dt, "rate": (s1["samples"] - s0["samples"]) / dt,
         "cpu_s": {k: ((c1[k] or 0) - (c0[k] or 0)) / CLK for k in procs_cpu},
         "lat_p50_ms": lat["p50"], "lat_p99_ms": lat["p99"], "load": loadavg()}
    if st0 and st1:
        pend.append((s1["t"] - s0["t"], st1["outbox"]["pending"]))
        r["pending0"] = st0["outbox"]["pending"]
        r["pending1"] = st1["outbox"]["pending"]
        r["pending_slope"] = slope(pend)
        r["acked"] = st1["broker"]["acked"] - st0["broker"]["acked"]
        r["skipped"] = sum(d["skipped"] for d in st1["devices"]) - sum(d["skipped"] for d in st0["devices"])
    return r


def run_broker_limit(broker, sub, label="broker"):
    """pubbench -> mosquitto -> countsub, same topic shape and payload size."""
    secs = WARM + WINDOW + 1.0
    p = PROCS.start("pubbench", [OUT / "pubbench", "-p", broker.port, "-x", PREFIX, "-d", NDEV,
                                 "-n", 500, "-w", 100, "-s", secs], stdout=subprocess.PIPE)
    time.sleep(WARM)
    r = measure_window(sub, {"pub": lambda: cpu_ticks(p.pid), "broker": lambda: cpu_ticks(broker.p.pid),
                             "sub": lambda: cpu_ticks(sub.p.pid)}, None, WINDOW)
    out = p.stdout.read().decode()
    p.wait(30)
    PROCS.stop(p)
    try:
        r["pub"] = json.loads(out)
        r["pub_ack_rate"] = r["pub"]["acked"] / r["pub"]["secs"]
    except ValueError:
        r["pub"] = out
    r.update(kind=label)
    sub.quiesce()
    results["runs"].append(r)
    log(f"  broker limit: {r['rate']:.0f} msg/s at the subscriber "
        f"(publisher acked {r.get('pub_ack_rate', 0):.0f}/s), load {r['load'][0]}")
    return r


def run_agent_load(broker, sub, sims, rate=None, ntags=None, poll_ms=None, layout="tag", label="mbgate",
                   window=None):
    """mbgate at an offered load; sustained = pending flat and delivered ~ offered."""
    if rate is not None:
        poll_ms = 200
        ntags = max(1, round(rate * poll_ms / 1000 / NDEV))
        if ntags > SIM_TAGS:
            ntags = SIM_TAGS
            poll_ms = max(10, round(NDEV * ntags * 1000 / rate))
    offered = NDEV * ntags * 1000.0 / poll_ms
    conf, state = agent_config(broker.port, sims, ntags, poll_ms, layout)
    a = Agent(conf)
    try:
        a.wait_connected()
        time.sleep(WARM)
        pid = a.p.pid
        r = measure_window(sub, {"agent": a.cpu, "agent_main": lambda: cpu_ticks(f"{pid}/task/{pid}"),
                                 "broker": lambda: cpu_ticks(broker.p.pid), "sub": lambda: cpu_ticks(sub.p.pid),
                                 "sims": sims.cpu}, a.status, window or WINDOW)
        r["hwm_kb"] = a.hwm_kb()
    finally:
        a.stop()
    shutil.rmtree(state, ignore_errors=True)
    sub.quiesce()
    r.update(kind=label, layout=layout, ntags=ntags, poll_ms=poll_ms, offered=offered)
    r["cpu_per_M"] = r["cpu_s"]["agent"] / max(1, r["samples"]) * 1e6
    # flat: the fitted slope, and the end points within one poll cycle's burst
    grow_ok = r.get("pending_slope", 0) < max(50.0, 0.02 * offered) and \
        r.get("pending1", 0) - r.get("pending0", 0) < max(500, 0.25 * offered, offered * poll_ms / 1000)
    r["sustained"] = bool(grow_ok and r["rate"] >= 0.95 * offered)
    results["runs"].append(r)
    log(f"  {label} {layout}: {NDEV}x{ntags} tags @ {poll_ms} ms = {offered:.0f}/s offered -> "
        f"{r['rate']:.0f} samples/s ({r['msg_rate']:.0f} msg/s), pending {r.get('pending0')}->{r.get('pending1')} "
        f"(slope {r.get('pending_slope', 0):.0f}/s), cpu {r['cpu_per_M']:.1f} s/M, "
        f"{'SUSTAINED' if r['sustained'] else 'not sustained'}, load {r['load'][0]}")
    return r


# --------------------------------------------------------------------------
# Node-RED
# --------------------------------------------------------------------------

def node_red_installed():
    return (NODE_RED_DIR / "node_modules" / "node-red" / "red.js").exists() and \
        (NODE_RED_DIR / "node_modules" / "node-red-contrib-modbus" / "package.json").exists()


def install_node_red():
    if node_red_installed():
        return True
    if not shutil.which("npm"):
        return False
    NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
    log("  installing Node-RED + node-red-contrib-modbus@5.23.3 under", NODE_RED_DIR)
    r = subprocess.run(["npm", "install", "--prefix", str(NODE_RED_DIR), "--no-audit", "--no-fund",
                        "node-red", "node-red-contrib-modbus@5.23.3"],
                       capture_output=True, text=True, timeout=900)
    (RUN / "npm-install.log").write_text(r.stdout + r.stderr)
    return r.returncode == 0 and node_red_installed()


def node_red_flows(broker_port, sims, ntags, poll_ms):
    """modbus-read nodes (<= 125 registers each) -> function (one message per
    tag, mbgate's payload) -> mqtt out QoS 1."""
    nodes = [{"id": "tab1", "type": "tab", "label": "bench"},
             {"id": "mqtt1", "type": "mqtt-broker", "name": "bench", "broker": "127.0.0.1",
              "port": str(broker_port), "clientid": "", "autoConnect": True, "usetls": False,
              "protocolVersion": "4", "keepalive": "60", "cleansession": True, "autoUnsubscribe": True,
              "birthTopic": "", "closeTopic": "", "willTopic": "", "sessionExpiry": ""},
             {"id": "out1", "type": "mqtt out", "z": "tab1", "name": "", "topic": "", "qos": "1",
              "retain": "false", "respTopic": "", "contentType": "", "userProps": "", "correl": "",
              "expiry": "", "broker": "mqtt1", "x": 700, "y": 100, "wires": []}]
    y = 40
    for name in device_names():
        port, unit = sims.where[name]
        cid = f"cl_{name}"
        nodes.append({"id": cid, "type": "modbus-client", "name": name, "clienttype": "tcp",
                      "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False,
                      "failureLogEnabled": False, "tcpHost": "127.0.0.1", "tcpPort": str(port),
                      "tcpType": "DEFAULT", "serialPort": "/dev/ttyUSB", "serialType": "RTU-BUFFERD",
                      "serialBaudrate": "9600", "serialDatabits": "8", "serialStopbits": "1",
                      "serialParity": "none", "serialConnectionDelay": "100",
                      "serialAsciiResponseStartDelimiter": "0x3A", "unit_id": str(unit),
                      "commandDelay": "1", "clientTimeout": "1000", "reconnectOnTimeout": True,
                      "reconnectTimeout": "2000", "parallelUnitIdsAllowed": True})
        for off in range(0, ntags, 125):
            q = min(125, ntags - off)
            rid, fid = f"rd_{name}_{off}", f"fn_{name}_{off}"
            fn = ("const ts = Date.now();\nconst v = msg.payload;\nconst out = [];\n"
                  "for (let i = 0; i < v.length; i++) {\n"
                  f"  const n = String({off} + i + 1).padStart(4, '0');\n"
                  f"  out.push({{topic: '{PREFIX}/{name}/t' + n, "
                  "payload: JSON.stringify({v: v[i], ts: ts, q: 'good'})});\n"
                  "}\nreturn [out];\n")
            nodes.append({"id": rid, "type": "modbus-read", "z": "tab1", "name": rid, "topic": "",
                          "showStatusActivities": False, "logIOActivities": False, "showErrors": False,
                          "unitid": str(unit), "dataType": "HoldingRegister", "adr": str(off),
                          "quantity": str(q), "rate": str(poll_ms), "rateUnit": "ms",
                          "delayOnStart": False, "startDelayTime": "", "server": cid,
                          "useIOFile": False, "ioFile": "", "useIOForPayload": False,
                          "emptyMsgOnFail": False, "x": 150, "y": y, "wires": [[fid], []]})
            nodes.append({"id": fid, "type": "function", "z": "tab1", "name": fid, "func": fn,
                          "outputs": 1, "timeout": 0, "noerr": 0, "initialize": "", "finalize": "",
                          "libs": [], "x": 400, "y": y, "wires": [["out1"]]})
            y += 40
    return nodes


def run_node_red(broker, sub, sims, ntags, poll_ms, label="node-red"):
    userdir = RUN / "node-red-user"
    if userdir.exists():
        shutil.rmtree(userdir)
    userdir.mkdir(parents=True)
    flows = userdir / "flows.json"
    flows.write_text(json.dumps(node_red_flows(broker.port, sims, ntags, poll_ms), indent=1))
    ui = free_port()
    settings = userdir / "settings.js"
    settings.write_text(
        "module.exports = {\n"
        f"  uiHost: '127.0.0.1', uiPort: {ui}, flowFile: 'flows.json', credentialSecret: false,\n"
        "  httpAdminRoot: '/', httpNodeRoot: false, disableEditor: true,\n"
        "  diagnostics: { enabled: false, ui: false }, telemetry: { enabled: false },\n"
        "  externalModules: { autoInstall: false, palette: { allowInstall: false } },\n"
        "  logging: { console: { level: 'warn', metrics: false, audit: false } },\n"
        "  editorTheme: { projects: { enabled: false }, tours: false },\n"
        "};\n")
    offered = NDEV * ntags * 1000.0 / poll_ms
    red = NODE_RED_DIR / "node_modules" / "node-red" / "red.js"
    env = dict(os.environ, NODE_RED_ENABLE_PROJECTS="false", HOME=str(userdir))
    p = PROCS.start("node-red", ["node", red, "-u", userdir, "-s", settings, flows], env=env,
                    cwd=userdir)
    try:
        s_start = sub.stats()["msgs"]
        wait_until(lambda: p.poll() is not None or sub.stats()["msgs"] > s_start + 100, 90,
                   "Node-RED to publish", 0.2)
        if p.poll() is not None:
            raise RuntimeError(f"node-red exited rc={p.returncode}; see {RUN}/node-red.log")
        time.sleep(WARM)
        r = measure_window(sub, {"node-red": lambda: cpu_ticks(p.pid), "broker": lambda: cpu_ticks(broker.p.pid),
                                 "sims": sims.cpu}, None, WINDOW)
        r["hwm_kb"] = vm_hwm_kb(p.pid)
    finally:
        PROCS.stop(p, 15)
    sub.quiesce(timeout=30)
    r.update(kind=label, ntags=ntags, poll_ms=poll_ms, offered=offered)
    r["cpu_per_M"] = r["cpu_s"]["node-red"] / max(1, r["samples"]) * 1e6
    results["runs"].append(r)
    log(f"  node-red: {NDEV}x{ntags} tags @ {poll_ms} ms = {offered:.0f}/s offered -> {r['rate']:.0f} samples/s, "
        f"cpu {r['cpu_per_M']:.1f} s/M, rss {r['hwm_kb']} kB, load {r['load'][0]}")
    return r


# --------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def section_throughput(broker, sub, sims, table):
    log("== 1/6: throughput vs the broker's own limit")
    base = [run_broker_limit(broker, sub)]
    B = base[0]["rate"]
    # ladder over offered rates as fractions of the broker's limit (200 ms
    # polls, tags per device scaled), up to the first rung not sustained
    best = None
    tried = []
    for f in (0.5, 0.65, 0.8, 0.9, 1.0, 1.1, 1.25):
        r = run_agent_load(broker, sub, sims, rate=f * B, label="ladder")
        tried.append((f, r))
        if not r["sustained"]:
            break
        best = (f, r)
    if best is None:
        # below half the broker's limit: walk down
        f = 0.35
        while f > 0.02:
            r = run_agent_load(broker, sub, sims, rate=f * B, label="ladder")
            tried.append((f, r))
            if r["sustained"]:
                best = (f, r)
                break
            f *= 0.7
    elif tried[-1][1]["sustained"] is False:
        # one bisection step between the last good and the first bad rung
        fm = (best[0] + tried[-1][0]) / 2
        r = run_agent_load(broker, sub, sims, rate=fm * B, label="ladder")
        tried.append((fm, r))
        if r["sustained"]:
            best = (fm, r)
    if best is None:
        best = tried[-1]  # nothing sustained: report the lowest rung tried
    rate, ntags, poll = best[1]["offered"], best[1]["ntags"], best[1]["poll_ms"]
    # confirmation triplets: broker limit, mbgate, Node-RED, on the same load
    mb, nr = [], []
    have_red = "6" not in SKIP and install_node_red()
    for i in range(REPS):
        if i > 0:
            base.append(run_broker_limit(broker, sub))
        mb.append(run_agent_load(broker, sub, sims, ntags=ntags, poll_ms=poll, label="mbgate"))
        if have_red:
            try:
                nr.append(run_node_red(broker, sub, sims, ntags, poll))
            except Exception as e:
                log("  node-red run failed:", e)
    # the ladder's rung may have been a lucky run: when most confirmations
    # grew a backlog, confirm the next lower rung that the ladder sustained
    fallback = None
    mb_same = list(mb)  # on Node-RED's load, for section 6
    if sum(r["sustained"] for r in mb) * 2 < len(mb):
        lower = [(f_, r_) for f_, r_ in tried if r_["sustained"] and r_["offered"] < rate]
        if lower:
            f_, r_ = max(lower, key=lambda x: x[1]["offered"])
            fallback = (ntags, poll, [round(r["rate"]) for r in mb])
            ntags, poll, rate = r_["ntags"], r_["poll_ms"], r_["offered"]
            mb = [run_agent_load(broker, sub, sims, ntags=ntags, poll_ms=poll, label="mbgate-lower")
                  for _ in range(REPS)]
    Bm = med([b["rate"] for b in base])
    Mm = med([r["rate"] for r in mb])
    n_sus = sum(r["sustained"] for r in mb)
    table["broker"] = {"rate": Bm, "pub_cpu_per_M": med([b["cpu_s"]["pub"] / max(1, b["samples"]) * 1e6 for b in base]),
                       "runs": [round(b["rate"]) for b in base]}
    table["tag"] = {"rate": Mm, "ratio": Mm / Bm if Bm else None, "ntags": ntags,
                    "poll_ms": poll, "offered": rate, "sustained": f"{n_sus}/{len(mb)}",
                    "cpu_per_M": med([r["cpu_per_M"] for r in mb]),
                    "lat_p50": med([r["lat_p50_ms"] for r in mb]), "lat_p99": med([r["lat_p99_ms"] for r in mb]),
                    "runs": [round(r["rate"]) for r in mb], "fallback": fallback,
                    "ladder": [(round(f_ * B), round(r_["rate"]), r_["sustained"]) for f_, r_ in tried]}
    if nr:
        Nm = med([r["rate"] for r in nr])
        mb_eff = med([r["rate"] / max(1e-9, r["cpu_s"]["agent"] / r["secs"]) for r in mb_same])
        nr_eff = med([r["rate"] / max(1e-9, r["cpu_s"]["node-red"] / r["secs"]) for r in nr])
        Ms = med([r["rate"] for r in mb_same])
        table["nodered"] = {"rate": Nm, "rate_ratio": Ms / Nm if Nm else None,
                            "cpu_per_M": med([r["cpu_per_M"] for r in nr]),
                            "eff": nr_eff, "mb_eff": mb_eff, "eff_ratio": mb_eff / nr_eff if nr_eff else None,
                            "hwm_kb": med([r["hwm_kb"] for r in nr]),
                            "runs": [round(r["rate"]) for r in nr]}
    elif "6" not in SKIP:
        table["nodered"] = {"error": "Node-RED not available (npm install failed?)"}
    # device layout: one message per device per cycle, 500 tags each, faster polls
    if "1d" not in SKIP:
        log("== 1/6: device layout")
        best_d = None
        for poll in (200, 100, 50, 25, 15, 10):
            r = run_agent_load(broker, sub, sims, ntags=500, poll_ms=poll, layout="device", label="ladder-dev")
            if not r["sustained"]:
                break
            best_d = r
        if best_d:
            runs = [best_d] + [run_agent_load(broker, sub, sims, ntags=500, poll_ms=best_d["poll_ms"],
                                              layout="device", label="mbgate-dev") for _ in range(REPS - 1)]
            table["device"] = {"rate": med([r["rate"] for r in runs]), "msg_rate": med([r["msg_rate"] for r in runs]),
                               "poll_ms": best_d["poll_ms"], "ntags": 500,
                               "cpu_per_M": med([r["cpu_per_M"] for r in runs]),
                               "sustained": f"{sum(r['sustained'] for r in runs)}/{len(runs)}",
                               "runs": [round(r["rate"]) for r in runs]}
        else:
            table["device"] = {"rate": 0, "note": "not sustained at 200 ms"}


def section_cost(broker, sub, sims, table):
    log("== 2/6: cost at 10,000 tags / 20 devices")
    B = table.get("broker", {}).get("rate") or 1e9
    poll = next((p for p in (1000, 2000, 5000) if 10000 * 1000 / p <= 0.6 * B), 5000)
    runs = []
    for _ in range(REPS):
        runs.append(run_agent_load(broker, sub, sims, ntags=500, poll_ms=poll, label="cost",
                                   window=max(WINDOW, 8.0 if QUICK else 20.0)))
    dev = []
    if "1d" not in SKIP:
        for _ in range(REPS):
            dev.append(run_agent_load(broker, sub, sims, ntags=500, poll_ms=poll, layout="device", label="cost-dev",
                                      window=max(WINDOW, 8.0 if QUICK else 20.0)))
    table["cost_device"] = {"cpu_per_M": med([r["cpu_per_M"] for r in dev]),
                            "hwm_mb": med([r["hwm_kb"] / 1024 for r in dev if r["hwm_kb"]])} if dev else None
    table["cost"] = {"poll_ms": poll, "rate": med([r["rate"] for r in runs]),
                     "cpu_per_M": med([r["cpu_per_M"] for r in runs]),
                     "hwm_mb": med([r["hwm_kb"] / 1024 for r in runs if r["hwm_kb"]]),
                     "runs_cpu": [round(r["cpu_per_M"], 2) for r in runs],
                     "runs_hwm_mb": [round(r["hwm_kb"] / 1024, 1) for r in runs if r["hwm_kb"]]}


def storebench(dirpath, n, batch=500, full=False, ntags=500, devlayout=False):
    argv = [OUT / "storebench", "-D", dirpath, "-n", n, "-b", batch, "-d", NDEV, "-t", ntags, "-a", 600000]
    if full:
        argv.append("-f")
    if devlayout:
        argv.append("-L")
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError("storebench: " + r.stderr)
    return json.loads(r.stdout)


def drain_once(broker, sub, sims, layout, n=None):
    """One drain of n (DRAIN_N) stored samples (values) with live data flowing."""
    n = n or DRAIN_N
    live_tags, live_poll = 100, 1000        # 2,000 samples/s of live data meanwhile
    dev = layout == "device"
    conf, state = agent_config(broker.port, sims, live_tags, live_poll, layout=layout)
    # device layout: one row per device and cycle, live_tags values each
    fill = storebench(state, n, batch=(25 if dev else 500), ntags=live_tags, devlayout=dev)
    log(f"  {layout}: filled {n} samples with store_put in {fill['secs']:.1f} s: {fill['rate']:.0f} inserts/s")
    rows_left = NDEV * 2 if dev else live_tags * NDEV   # "drained" once pending is below ~1 s of live rows
    sub.cmd("latreset")   # latency and backlog timing start with this drain
    s0 = sub.stats()
    a = Agent(conf)
    c0 = None
    try:
        a.wait_connected(120)
        c0 = a.cpu()
        wait_until(lambda: sub.stats()["hist"] > s0["hist"], 60, "the first backlog message", 0.05)
        s1 = sub.stats()   # live rate: from the start of the drain
        end = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < end:
            time.sleep(1.0)
            s = sub.stats()
            st = a.status()
            done = s["hist_samples"] - s0["hist_samples"]
            if done >= n:
                break
            if st and st["outbox"]["pending"] < rows_left and done >= 0.99 * n:
                break
        # the last backlog messages may still be on their way
        end = time.monotonic() + 10
        while sub.stats()["hist_samples"] - s0["hist_samples"] < n and time.monotonic() < end:
            time.sleep(0.2)
        s2 = sub.stats()
        lat = sub.cmd("lat")
        c1 = a.cpu()
        hwm = a.hwm_kb()
    finally:
        a.stop()
    shutil.rmtree(state, ignore_errors=True)
    sub.quiesce()
    hist = s2["hist_samples"] - s0["hist_samples"]
    live = lambda x: x["samples"] - x["hist_samples"]  # noqa: E731
    # from the first backlog message received to the last one
    dt = max(1e-6, s2["last_hist_t"] - s2["first_hist_t"])
    hist_rate = hist / dt
    live_rate = (live(s2) - live(s1)) / max(1e-6, s2["t"] - s1["t"])
    r = {"kind": "drain", "layout": layout, "n": n, "hist": hist, "secs": dt, "rate": hist_rate,
         "msg_rate": (s2["hist"] - s0["hist"]) / dt,
         "complete": hist >= n, "live_rate": live_rate, "live_offered": live_tags * NDEV * 1000 / live_poll,
         "lat_p50_ms": lat["p50"], "lat_p99_ms": lat["p99"], "lat_max_ms": lat["max"],
         "cpu_per_M": ((c1 or 0) - (c0 or 0)) / CLK / max(1, hist + live(s2) - live(s0)) * 1e6,
         "hwm_kb": hwm, "insert_rate": fill["rate"], "load": loadavg()}
    results["runs"].append(r)
    log(f"  {layout} drain: {hist} backlog samples in {dt:.1f} s = {r['rate']:.0f}/s "
        f"({r['msg_rate']:.0f} msg/s), live {live_rate:.0f}/s "
        f"p50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms, {'complete' if r['complete'] else 'INCOMPLETE'}, "
        f"load {r['load'][0]}")
    return r


def section_drain(broker, sub, sims, table):
    log("== 3/6: backlog drain and outbox inserts")
    drains = [drain_once(broker, sub, sims, "tag") for _ in range(REPS)]
    ddev = drain_once(broker, sub, sims, "device")
    # the agent's own sync = "full" path, once, for information
    tmp = RUN / "store-full"
    shutil.rmtree(tmp, ignore_errors=True)
    full = storebench(tmp, min(DRAIN_N, 200000), full=True)
    shutil.rmtree(tmp, ignore_errors=True)
    ins = [r["insert_rate"] for r in drains]
    table["drain"] = {"n": DRAIN_N, "rate": med([r["rate"] for r in drains]),
                      "complete": f"{sum(r['complete'] for r in drains)}/{len(drains)}",
                      "live_rate": med([r["live_rate"] for r in drains]), "live_offered": drains[0]["live_offered"],
                      "lat_p50": med([r["lat_p50_ms"] for r in drains]), "lat_p99": med([r["lat_p99_ms"] for r in drains]),
                      "cpu": med([r["cpu_per_M"] for r in drains]),
                      "insert_rate": med(ins), "insert_full": full["rate"],
                      "runs": [round(r["rate"]) for r in drains], "runs_ins": [round(x) for x in ins],
                      "dev": {"rate": ddev["rate"], "msg_rate": ddev["msg_rate"], "complete": ddev["complete"],
                              "lat_p99": ddev["lat_p99_ms"], "live_rate": ddev["live_rate"],
                              "cpu": ddev["cpu_per_M"]}}


def section_setpoints(broker, table):
    log("== 4/6: setpoint round trip")
    # a small device of its own, with polling going on
    port = free_port()
    tags = [{"name": "sp", "table": "holding", "address": 0, "type": "uint16", "writable": True,
             "min": 0, "max": 60000}] + \
        [{"name": f"t{i:04d}", "table": "holding", "address": 10 + i, "type": "uint16", "sim": "counter"}
         for i in range(1, 21)]
    dev = {"name": "sp1", "transport": "tcp", "host": "127.0.0.1", "port": port, "unit_id": 1,
           "poll_ms": 100, "timeout_ms": 1000, "retries": 1, "tags": tags}
    simconf = RUN / "sim-sp.conf"
    simconf.write_text(render_config({"gateway": {"id": "benchsim", "state_dir": str(RUN / "simstate")},
                                      "mqtt": {"host": "127.0.0.1", "port": 1}}, [dev]))
    sim = PROCS.start("sim-sp", [MBGATE, "sim", "-c", simconf, "--listen", f"127.0.0.1:{port}"])
    wait_until(lambda: port_open(port), 15, "setpoint sim")
    state = RUN / "state-sp"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    conf = RUN / "agent-sp.conf"
    conf.write_text(render_config({
        "gateway": {"id": "bench", "state_dir": str(state), "log_level": "info"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 30, "qos": 1},
        "control": {"socket": str(RUN / "asp.sock")},
        "setpoints": {"max_rate": 100000, "max_age_s": 30}}, [dev]))
    a = Agent(conf)
    runs = []
    try:
        a.wait_connected()
        time.sleep(1)
        for _ in range(REPS):
            r = subprocess.run(["/usr/bin/python3", str(HERE / "setpoint_rtt.py"), "--port", str(broker.port),
                                "--topic", f"{PREFIX}/sp1/sp/set", "-n", "1000"],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError("setpoint_rtt: " + r.stderr[-2000:])
            x = json.loads(r.stdout)
            x.update(kind="setpoint", load=loadavg())
            results["runs"].append(x)
            runs.append(x)
            log(f"  setpoints: {x['n']} commands, {x['ok']} ok, p50 {x['p50_ms']:.2f} ms, p99 {x['p99_ms']:.2f} ms, "
                f"max {x['max_ms']:.1f} ms, load {x['load'][0]}")
        # the same against mosquitto's default settings (set_tcp_nodelay off)
        a.stop()
        b2 = Broker(nodelay=False)
        conf.write_text(conf.read_text().replace(f"port = {broker.port}L", f"port = {b2.port}L")
                        .replace(f"port = {broker.port};", f"port = {b2.port};"))
        a = Agent(conf, name="agent-dflt")
        a.wait_connected()
        time.sleep(1)
        r = subprocess.run(["/usr/bin/python3", str(HERE / "setpoint_rtt.py"), "--port", str(b2.port),
                            "--topic", f"{PREFIX}/sp1/sp/set", "-n", "300"],
                           capture_output=True, text=True, timeout=300)
        dflt = json.loads(r.stdout) if r.returncode == 0 else {}
        log(f"  setpoints, mosquitto default config (Nagle on): p50 {dflt.get('p50_ms') or 0:.2f} ms, "
            f"p99 {dflt.get('p99_ms') or 0:.2f} ms")
        b2.stop()
    finally:
        a.stop()
        PROCS.stop(sim)
        shutil.rmtree(state, ignore_errors=True)
    # the link thread's share (write + read-back), from the audit lines
    link = sorted(float(x) for x in re.findall(r": ok in ([0-9.]+) ms", (RUN / f"agent-{conf.stem}.log").read_text()))
    table["setpoint_link"] = {"p50": link[len(link) // 2] if link else None,
                              "p99": link[min(len(link) - 1, int(0.99 * len(link)))] if link else None}
    table["setpoint_default_broker"] = {"p50": dflt.get("p50_ms"), "p99": dflt.get("p99_ms")}
    table["setpoint"] = {"p50": med([r["p50_ms"] for r in runs]), "p99": med([r["p99_ms"] for r in runs]),
                         "ok": sum(r["ok"] for r in runs), "n": sum(r["n"] for r in runs),
                         "runs": [(round(r["p50_ms"], 2), round(r["p99_ms"], 2)) for r in runs]}


# ---- 5: read plan vs DP optimum -------------------------------------------

def scattered_map(seed, ntags=2000):
    """A scattered tag map: all four tables, 1/2/4-register types, strings,
    bit tags (some aliasing registers of other tags), random gaps, two poll
    intervals. No overlaps of different types except bit aliases."""
    rnd = random.Random(seed)
    tags = []
    nxt = {"holding": 0, "input": 0, "coil": 0, "discrete": 0}
    reg_tags = []
    while len(tags) < ntags:
        table = rnd.choices(["holding", "input", "coil", "discrete"], [5, 3, 1, 1])[0]
        gap = int(rnd.expovariate(1 / 3)) if rnd.random() < 0.85 else rnd.randint(10, 100)
        addr = nxt[table] + gap
        name = f"s{len(tags) + 1:04d}"
        poll = 5000 if rnd.random() < 0.2 else None
        if table in ("coil", "discrete"):
            t = {"name": name, "table": table, "address": addr, "type": "bool"}
            cnt = 1
        else:
            kind = rnd.choices(["uint16", "int32", "float32", "float64", "string", "bit"], [4, 2, 2, 1, 0.3, 1])[0]
            if kind == "string":
                length = rnd.choice([8, 16, 20])
                t = {"name": name, "table": table, "address": addr, "type": "string", "length": length}
                cnt = (length + 1) // 2
            elif kind == "bit":
                # alias: on a register of an earlier tag of this table, or its own
                prev = [x for x in reg_tags if x[0] == table]
                if prev and rnd.random() < 0.5:
                    addr = rnd.choice(prev)[1]
                    t = {"name": name, "table": table, "address": addr, "type": "bool", "bit": rnd.randint(0, 15)}
                    if poll:
                        t["poll_ms"] = poll
                    tags.append(t)
                    continue
                t = {"name": name, "table": table, "address": addr, "type": "bool", "bit": rnd.randint(0, 15)}
                cnt = 1
            else:
                t = {"name": name, "table": table, "address": addr, "type": kind}
                cnt = {"uint16": 1, "int32": 2, "float32": 2, "float64": 4}[kind]
            reg_tags.append((table, addr))
        if addr + cnt > 65535:
            break
        if poll:
            t["poll_ms"] = poll
        tags.append(t)
        nxt[table] = addr + cnt
    return tags


def optimum(items, max_count, max_gap):
    """Fewest requests: DP over the items that are not nested in another
    (a nested item rides along with its container at no cost; between
    maximal items starts and ends both increase, so a request is a
    contiguous run of them)."""
    items = sorted(set(items), key=lambda x: (x[0], -x[1]))
    maximal, hi = [], -1
    for a, c in items:
        if a + c <= hi:
            continue
        maximal.append((a, a + c))
        hi = a + c
    n = len(maximal)
    INF = float("inf")
    best = [0] + [INF] * n
    for j in range(1, n + 1):
        # a request over maximal[i..j-1]; extend i leftwards while feasible
        s_end = maximal[j - 1][1]
        for i in range(j - 1, -1, -1):
            if s_end - maximal[i][0] > max_count:
                break
            if i < j - 1 and maximal[i + 1][0] - maximal[i][1] > max_gap:
                break
            if best[i] + 1 < best[j]:
                best[j] = best[i] + 1
    return best[n]


def section_plan(table):
    log("== 5/6: read plan vs optimum")
    limits = [(125, 2000, 16), (60, 800, 4), (32, 256, 0), (125, 2000, 40)]
    devs, expect = [], []
    tags = scattered_map(11)
    for k, (mr, mb, mg) in enumerate(limits):
        devs.append({"name": f"p{k + 1}", "transport": "tcp", "host": "127.0.0.1", "port": 15020 + k,
                     "unit_id": 1, "poll_ms": 1000, "max_read_registers": mr, "max_read_bits": mb,
                     "max_gap": mg, "tags": tags})
        groups = {}
        for t in tags:
            cnt = 1 if t["type"] == "bool" else (t.get("length", 0) + 1) // 2 if t["type"] == "string" else \
                {"uint16": 1, "int16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4,
                 "float64": 4}[t["type"]]
            groups.setdefault((t["table"], t.get("poll_ms", 1000)), []).append((t["address"], cnt))
        expect.append(sum(optimum(v, mb if tb in ("coil", "discrete") else mr, mg) for (tb, _), v in groups.items()))
    conf = RUN / "plan.conf"
    conf.write_text(render_config({"gateway": {"id": "benchplan", "state_dir": str(RUN / "planstate")},
                                   "mqtt": {"host": "127.0.0.1", "port": 1}}, devs))
    r = subprocess.run([str(MBGATE), "check", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("mbgate check: " + (r.stderr or r.stdout)[-2000:])
    got = [int(x) for x in re.findall(r"^\s*(\d+) requests? per device cycle", r.stdout, re.M)]
    rows = []
    for (mr, mb, mg), g, e in zip(limits, got, expect):
        rows.append({"max_read_registers": mr, "max_read_bits": mb, "max_gap": mg, "planner": g, "optimum": e})
        log(f"  {len(tags)} tags, max_read_registers {mr}, max_read_bits {mb}, max_gap {mg}: "
            f"planner {g} requests/cycle, optimum {e}")
    results["runs"].append({"kind": "plan", "rows": rows})
    table["plan"] = {"ntags": len(tags), "rows": rows}


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------

def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}"


def verdict(ok):
    return "PASS" if ok else "FAIL"


def render(table, up0, up1):
    rows = []
    add = rows.append
    b = table.get("broker")
    t = table.get("tag")
    if b and t:
        add(("1", "broker's own limit: pubbench QoS 1 -> mosquitto -> countsub (window 100)",
             f"{fmt(b['rate'])} msg/s (runs {b['runs']}; publisher {fmt(b['pub_cpu_per_M'], 1)} CPU-s/M)", "-", ""))
        add(("1", f"mbgate per-tag JSON, QoS 1, outbox: highest sustained ({NDEV}x{t['ntags']} tags @ {t['poll_ms']} ms)",
             f"{fmt(t['rate'])} samples/s (runs {t['runs']}, {t['sustained']} flat backlog; "
             f"live latency p50 {fmt(t['lat_p50'], 1)} / p99 {fmt(t['lat_p99'], 1)} ms)", "-", ""))
        if t.get("fallback"):
            fn, fp, fr = t["fallback"]
            add(("1", f"  (20x{fn} tags @ {fp} ms, the ladder's top rung, grew a backlog in most confirmations)",
                 f"delivered {fr}", "-", ""))
        add(("1", "  ratio to the broker's limit", fmt(t["ratio"], 2), ">= 0.80",
             verdict(t["ratio"] is not None and t["ratio"] >= 0.8)))
        add(("1", "  mbgate CPU at that load", f"{fmt(t['cpu_per_M'], 1)} CPU-s per million samples", "-", ""))
    d = table.get("device")
    if d:
        if d.get("rate"):
            add(("1", f"mbgate device layout ({NDEV}x{d['ntags']} tags @ {d['poll_ms']} ms)",
                 f"{fmt(d['rate'])} samples/s in {fmt(d['msg_rate'])} msg/s (runs {d['runs']}, {d['sustained']} flat; "
                 f"{fmt(d['cpu_per_M'], 2)} CPU-s/M)", "-", ""))
        else:
            add(("1", "mbgate device layout", d.get("note", "n/a"), "-", ""))
    c = table.get("cost")
    if c:
        add(("2", f"CPU per million samples, 10,000 tags / {NDEV} devices @ {c['poll_ms']} ms ({fmt(c['rate'])} samples/s)",
             f"{fmt(c['cpu_per_M'], 2)} CPU-s (runs {c['runs_cpu']})", "<= 5", verdict(c["cpu_per_M"] <= 5)))
        add(("2", "peak RSS (VmHWM), 10,000 tags", f"{fmt(c['hwm_mb'], 1)} MB (runs {c['runs_hwm_mb']})", "<= 20 MB",
             verdict(c["hwm_mb"] is not None and c["hwm_mb"] <= 20)))
        cd = table.get("cost_device")
        if cd:
            add(("2", "  same 10,000 tags in the device layout",
                 f"{fmt(cd['cpu_per_M'], 2)} CPU-s per million samples, VmHWM {fmt(cd['hwm_mb'], 1)} MB", "-", ""))
    dr = table.get("drain")
    if dr:
        add(("3", f"backlog drain of {dr['n']:,} samples (outbox pre-filled by store_put) with "
                  f"{fmt(dr['live_offered'])}/s live", f"{fmt(dr['rate'])} samples/s (runs {dr['runs']}, {dr['complete']} complete; "
             f"live delivered {fmt(dr['live_rate'])}/s)", ">= 20,000", verdict(dr["rate"] >= 20000)))
        if b:
            add(("3", "  backlog + live messages as a ratio to the broker's limit (1)",
                 fmt((dr["rate"] + dr["live_rate"]) / b["rate"], 2), "-", ""))
        add(("3", "  mbgate CPU during the drain", f"{fmt(dr['cpu'], 1)} CPU-s per million samples", "-", ""))
        dd = dr["dev"]
        add(("3", f"  same drain in the device layout ({NDEV} devices x 100 values per message)",
             f"{fmt(dd['rate'])} samples/s in {fmt(dd['msg_rate'])} msg/s "
             f"({'complete' if dd['complete'] else 'INCOMPLETE'}; live p99 {fmt(dd['lat_p99'], 1)} ms; "
             f"{fmt(dd['cpu'], 2)} CPU-s/M)", ">= 20,000",
             verdict(dd["rate"] >= 20000 and dd["complete"])))
        add(("3", "  live latency during the drain (ts -> subscriber)",
             f"p50 {fmt(dr['lat_p50'], 1)} ms, p99 {fmt(dr['lat_p99'], 1)} ms", "< 1000 ms",
             verdict(dr["lat_p99"] is not None and dr["lat_p99"] < 1000)))
        add(("3", "outbox inserts (store_put micro-benchmark, 500 samples/txn, sync normal)",
             f"{fmt(dr['insert_rate'])} samples/s (runs {dr['runs_ins']}; sync full: {fmt(dr['insert_full'])})",
             ">= 200,000", verdict(dr["insert_rate"] >= 200000)))
    s = table.get("setpoint")
    if s:
        add(("4", "setpoint round trip MQTT -> write -> read-back -> result (1,000 commands)",
             f"p50 {fmt(s['p50'], 2)} ms, p99 {fmt(s['p99'], 2)} ms ({s['ok']}/{s['n']} ok; runs {s['runs']})",
             "p50 <= 2, p99 <= 10", verdict(s["p50"] <= 2 and s["p99"] <= 10)))
        sl, sd = table.get("setpoint_link", {}), table.get("setpoint_default_broker", {})
        add(("4", "  of which on the link thread (write + read-back, audit log)",
             f"p50 {fmt(sl.get('p50'), 2)} ms, p99 {fmt(sl.get('p99'), 2)} ms", "-", ""))
        add(("4", "  same, mosquitto with its default set_tcp_nodelay false (300 commands)",
             f"p50 {fmt(sd.get('p50'), 2)} ms, p99 {fmt(sd.get('p99'), 2)} ms", "-", ""))
    p = table.get("plan")
    if p:
        for r in p["rows"]:
            add(("5", f"read plan, scattered {p['ntags']:,}-tag map, max_read_registers {r['max_read_registers']} "
                      f"max_read_bits {r['max_read_bits']} max_gap {r['max_gap']}",
                 f"{r['planner']} requests/cycle (DP optimum {r['optimum']})", "= optimum",
                 verdict(r["planner"] == r["optimum"])))
    n = table.get("nodered")
    if n:
        if n.get("error"):
            add(("6", "Node-RED", n["error"], "", "n/a"))
        else:
            add(("6", "Node-RED 4 + node-red-contrib-modbus 5.23.3, same workload as 1",
                 f"{fmt(n['rate'])} samples/s (runs {n['runs']}); {fmt(n['cpu_per_M'], 1)} CPU-s/M; RSS {fmt((n['hwm_kb'] or 0) / 1024, 0)} MB",
                 "-", ""))
            add(("6", "  mbgate / Node-RED samples/s", fmt(n["rate_ratio"], 2), "-", ""))
            add(("6", "  mbgate / Node-RED samples per CPU-second",
                 f"{fmt(n['eff_ratio'], 1)}x ({fmt(n['mb_eff'])} vs {fmt(n['eff'])})", ">= 10x",
                 verdict(n["eff_ratio"] is not None and n["eff_ratio"] >= 10)))
    w = [max(len(r[i]) for r in rows + [("#", "figure", "measured (median of runs)", "target", "")]) for i in range(5)]
    hdr = ("#", "figure", "measured (median of runs)", "target", "")
    text = [f"mbgate bench — {time.strftime('%Y-%m-%d %H:%M:%S')} — {os.cpu_count()} CPUs — reps {REPS}, window {WINDOW:.0f} s",
            f"load before: {up0}", f"load after:  {up1}", ""]
    text.append(" | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    text.append("-+-".join("-" * x for x in w))
    for r in rows:
        text.append(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    md = ["# mbgate bench results", "", f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, "
          f"{REPS} runs per figure (medians), {WINDOW:.0f} s windows.", "",
          f"- load before: `{up0}`", f"- load after: `{up1}`", "",
          "| # | figure | measured (median of runs) | target | |", "|---|---|---|---|---|"]
    for r in rows:
        md.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    md += ["", "Ladder (per-tag layout, offered -> delivered, sustained):", "",
           "```", json.dumps(table.get("tag", {}).get("ladder"), indent=None), "```", "",
           "Every run: build/bench/results.json. Logs and configs: build/bench/run/."]
    return "\n".join(text), "\n".join(md) + "\n"


def main():
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    for s in ("countsub", "pubbench", "storebench"):
        if not (OUT / s).exists():
            sys.exit(f"bench: {OUT / s} missing (run tests/bench/run.sh)")
    if not MBGATE.exists():
        sys.exit(f"bench: {MBGATE} missing (make)")
    up0 = uptime()
    log("bench:", up0)
    results["meta"] = {"start": up0, "reps": REPS, "window": WINDOW, "mbgate": str(MBGATE)}
    table = {}

    def on_term(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        broker = Broker()
        # P/D/T (tag layout) and P/D (device layout)
        sub = Sub(broker.port, [f"{PREFIX}/+/+", f"{PREFIX}/+"])
        sims = Sims() if not {"1", "2", "3"} <= SKIP else None
        if "1" not in SKIP:
            section_throughput(broker, sub, sims, table)
        if "2" not in SKIP:
            section_cost(broker, sub, sims, table)
        if "3" not in SKIP:
            section_drain(broker, sub, sims, table)
        if sims:
            sims.stop()
        if "4" not in SKIP:
            section_setpoints(broker, table)
        if "5" not in SKIP:
            section_plan(table)
        sub.stop()
        broker.stop()
    finally:
        PROCS.stop_all()
        up1 = uptime()
        results["meta"]["end"] = up1
        results["table"] = table
        (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
        text, md = render(table, up0, up1)
        (OUT / "results.md").write_text(md)
        print(text)


if __name__ == "__main__":
    main()
