"""Setpoint write-back from MQTT (SPEC §5, issue #4), end to end:

    paho (3.1.1 / 5) -> mosquitto -> mbgate run -> Modbus TCP -> pymodbus PLC

Every write is checked on the PLC itself (plc.get()) and, where the
function code matters, in the PLC's per-function-code statistics (stats()).
Results are read from P/D/T/set/result (and the MQTT 5 Response Topic), the
audit line from the agent's stderr log. P = "mbgate/itest".

PLCs that the shared pymodbus_plc.py cannot play (a small address space that
raises Illegal data address, a PLC that ignores writes, a PLC without FC22)
are variants of it started from an inline script (CUSTOM_PLC below).
"""
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import (SLOW, HERE, PREFIX, PYTHON, PymodbusPLC, agent_status, encode, now_ms,
                      run_cli, tcp_device, wait_for, write_config)


# ---------------------------------------------------------------- helpers

def result_topic(dev, tag):
    return f"{PREFIX}/{dev}/{tag}/set/result"


def new_id(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Commander:
    """A paho client that publishes setpoint commands (QoS 1)."""

    _seq = 0

    def __init__(self, port, protocol="3.1.1"):
        Commander._seq += 1
        self.v5 = str(protocol) == "5"
        cid = f"itest-cmd-{os.getpid()}-{Commander._seq}"
        if self.v5:
            self.client = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(client_id=cid, clean_session=True,
                                      protocol=mqtt.MQTTv311)
        self._connected = threading.Event()
        self.client.on_connect = lambda *a, **k: self._connected.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            pytest.fail(f"command publisher could not connect to port {port}", pytrace=False)

    def publish(self, topic, payload, retain=False, properties=None):
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        kw = {"properties": properties} if properties is not None else {}
        info = self.client.publish(topic, payload, qos=1, retain=retain, **kw)
        info.wait_for_publish(5)
        assert info.is_published(), f"publish to {topic} not acknowledged by the broker"
        return time.monotonic()

    def send(self, dev, tag, payload, retain=False, properties=None):
        return self.publish(f"{PREFIX}/{dev}/{tag}/set", payload, retain, properties)

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


@pytest.fixture
def make_commander(broker):
    made = []

    def make(protocol="3.1.1"):
        c = Commander(broker.port, protocol)
        made.append(c)
        return c
    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass


class Rig:
    """Collector + commander + agent + PLC of one test."""

    def __init__(self, col, cmd, agent, plc, conf):
        self.col, self.cmd, self.agent, self.plc, self.conf = col, cmd, agent, plc, conf

    def result(self, dev, tag, cid, timeout=5.0, after=0):
        return self.col.wait_message(result_topic(dev, tag), lambda d: d.get("id") == cid,
                                     timeout=timeout, after=after)

    def write(self, dev, tag, v, cid=None, timeout=5.0, **extra):
        """Send {"v":v,"id":cid,...} and return (result, seconds until it arrived)."""
        cid = cid or new_id()
        body = {"v": v, "id": cid}
        body.update(extra)
        t0 = self.cmd.send(dev, tag, body)
        res = self.result(dev, tag, cid, timeout)
        return res, time.monotonic() - t0

    def ok(self, dev, tag, v, **kw):
        res, _ = self.write(dev, tag, v, **kw)
        assert res.get("ok") is True, f"write {dev}/{tag} = {v!r} failed: {res}\n{self.agent.log_tail()}"
        return res

    def refused(self, dev, tag, payload, code, cid=None, detail=None, timeout=5.0):
        """Send payload (an object gets an id) and expect error `code`."""
        if isinstance(payload, dict):
            cid = cid or new_id(code)
            payload = dict(payload, id=cid)
            res = self.result_after_send(dev, tag, payload, lambda d: d.get("id") == cid, timeout)
        else:
            # no id to correlate a bare value: take the next result on the topic
            mark = self.col.mark()
            self.cmd.send(dev, tag, payload)
            res = self.col.wait_message(result_topic(dev, tag), timeout=timeout, after=mark)
        assert res.get("ok") is False and res.get("error") == code, \
            f"{dev}/{tag} <- {payload!r}: expected error {code}, got {res}"
        assert isinstance(res.get("detail"), str) and res["detail"], f"no detail: {res}"
        if cid is not None:
            assert res.get("id") == cid, f"id not echoed: sent {cid}, got {res}"
        if detail is not None:
            assert re.search(detail, res["detail"]), f"detail {res['detail']!r} !~ /{detail}/"
        return res

    def result_after_send(self, dev, tag, payload, pred, timeout):
        mark = self.col.mark()
        self.cmd.send(dev, tag, payload)
        return self.col.wait_message(result_topic(dev, tag), pred, timeout=timeout, after=mark)

    def wait_ready(self, dev, tag, timeout=15.0):
        """A good sample of dev/tag: the agent is connected and, since it
        subscribes before it publishes any sample, its /set subscription is
        in place at the broker."""
        return self.col.wait_message(f"{PREFIX}/{dev}/{tag}", lambda d: d.get("q") == "good",
                                     timeout=timeout)

    def wait_audit(self, regex, timeout=5.0):
        return self.agent.wait_log(regex, timeout)

    def writes(self):
        return self.plc.stats()["writes"]


def start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc, devices,
              protocol="3.1.1", ready=None, **overrides):
    """Write the config for devices (each a tcp_device dict), start the agent
    and wait until ready=(dev, tag) publishes a good sample."""
    if protocol == "5":
        overrides["mqtt"] = dict(overrides.get("mqtt") or {}, protocol="5")
    conf = write_config(tmp_path, devices, broker.port, **overrides)
    col = make_collector("#", protocol=protocol)
    cmd = make_commander(protocol)
    agent = make_agent(conf).start()
    rig = Rig(col, cmd, agent, plc, conf)
    if ready:
        rig.wait_ready(*ready)
    return rig


def dev(name, plc_port, tags, **kw):
    kw.setdefault("poll_ms", 200)
    kw.setdefault("timeout_ms", 500)
    kw.setdefault("retries", 0)
    return tcp_device(name, plc_port, tags, **kw)


# ---------------------------------------------------------------- PLC variants

CUSTOM_PLC = r'''
"""pymodbus_plc.py with quirks: --size N (every table holds N values, so
higher addresses answer Illegal data address), --ignore-writes (writes are
acknowledged but not stored), --no-fc22 (mask write answers Illegal function)."""
import argparse, asyncio, logging, sys
sys.path.insert(0, sys.argv.pop(1))
import pymodbus_plc as base
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server.async_io import ModbusTcpServer


class Ctx(base.CountingContext):
    ignore_writes = False

    def setValues(self, fc_as_hex, address, values):
        if self.ignore_writes:
            self.writes[fc_as_hex] += 1
            self.requests.append([fc_as_hex, address, len(values)])
            return None
        return super().setValues(fc_as_hex, address, values)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--init")
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--ignore-writes", action="store_true")
    ap.add_argument("--no-fc22", action="store_true")
    args = ap.parse_args()
    blocks = {}
    for table, key in base.TABLE_KEYS.items():
        fill = False if table in ("coil", "discrete") else 0
        blocks[key] = ModbusSequentialDataBlock(0, [fill] * args.size)
    ctx = Ctx(zero_mode=True, **blocks)
    ctx.ignore_writes = args.ignore_writes
    if args.init:
        import json
        with open(args.init) as f:
            for table, values in json.load(f).items():
                for addr, v in values.items():
                    vals = v if isinstance(v, list) else [v]
                    ctx.raw_set(table, int(addr), [base._norm(table, x) for x in vals])
    server = ModbusTcpServer(ModbusServerContext(slaves=ctx, single=True),
                             address=(args.host, args.port), allow_reuse_address=True)
    if args.no_fc22:
        server.decoder._ServerDecoder__lookup.pop(22)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    mport = server.server.sockets[0].getsockname()[1]
    ctl = await asyncio.start_server(lambda r, w: base.control_client(ctx, r, w), args.host, 0)
    print(f"READY modbus={mport} control={ctl.sockets[0].getsockname()[1]}", flush=True)
    await task


logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
asyncio.run(main())
'''


class CustomPLC(PymodbusPLC):
    """A PymodbusPLC (same banner, control channel, stats) run from
    CUSTOM_PLC with extra options."""

    def __init__(self, registry, tmp_path, extra, init=None, name="qplc"):
        self.script = Path(tmp_path) / "custom_plc.py"
        self.script.write_text(CUSTOM_PLC)
        self.extra = [str(x) for x in extra]
        super().__init__(registry, tmp_path, init=init, name=name)

    def _spawn(self, stdout=None):
        # PymodbusPLC.start() sets argv for pymodbus_plc.py; run ours instead
        self.argv = [PYTHON, str(self.script), str(HERE), "--host", "127.0.0.1",
                     "--port", str(self.port), "--init", str(self.init_path), *self.extra]
        return super()._spawn(stdout=stdout)


@pytest.fixture
def make_custom_plc(procs, tmp_path):
    def make(*extra, init=None, name="qplc"):
        return CustomPLC(procs, tmp_path, extra, init=init, name=name).start()
    return make


@pytest.fixture
def black_hole():
    """A TCP listener that accepts connections, reads and never answers.
    Yields its port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    stop = threading.Event()
    conns = []

    def run():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.setblocking(False)
                conns.append(c)
            except socket.timeout:
                pass
            except OSError:
                break
            for c in list(conns):
                try:
                    c.recv(4096)  # swallow requests
                except (BlockingIOError, OSError):
                    pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


# ---------------------------------------------------------------- tags

SP = {"name": "sp", "table": "holding", "address": 200, "type": "uint16", "writable": True,
      "min": 0, "max": 1500}


def fc_writes(before, after):
    """{fc: n} of the writes between two stats() snapshots."""
    out = {}
    for k, v in after.items():
        n = v - before.get(k, 0)
        if n:
            out[k] = n
    return out


# ================================================================ function codes

def test_function_code_paths_coil_register_float_and_write_multiple(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    """FC05 for a coil, FC06 for one register, FC16 for a float32, and with
    write_multiple = true FC15 / FC16 even for one coil / register."""
    plc = make_plc(init={"holding": {"200": 7, "210": 9}})
    tags = [{"name": "run", "table": "coil", "address": 0, "type": "bool", "writable": True},
            SP,
            {"name": "temp", "table": "holding", "address": 300, "type": "float32",
             "writable": True}]
    tags_m = [{"name": "run_m", "table": "coil", "address": 1, "type": "bool", "writable": True},
              {"name": "sp_m", "table": "holding", "address": 210, "type": "uint16",
               "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags),
                     dev("plc1m", plc.port, tags_m, unit_id=2, write_multiple=True)],
                    ready=("plc1", "sp"))
    rig.wait_ready("plc1m", "sp_m")

    cases = [
        ("plc1", "run", True, "coil", 0, [True], "5"),
        ("plc1", "run", False, "coil", 0, [False], "5"),
        ("plc1", "sp", 1234, "holding", 200, [1234], "6"),
        ("plc1", "temp", 123.456, "holding", 300, encode("float32", 123.456), "16"),
        ("plc1m", "run_m", True, "coil", 1, [True], "15"),
        ("plc1m", "sp_m", 4321, "holding", 210, [4321], "16"),
    ]
    for d, t, v, table, addr, regs, fc in cases:
        before = rig.writes()
        res = rig.ok(d, t, v)
        after = rig.writes()
        assert res.get("v") == v, f"{d}/{t}: result v {res.get('v')!r} != {v!r}: {res}"
        assert isinstance(res.get("ts"), int) and abs(res["ts"] - now_ms()) < 10000, res
        got = plc.get(table, addr, len(regs))
        assert got == regs, f"{d}/{t} = {v!r}: PLC {table} {addr} holds {got}, want {regs}"
        assert fc_writes(before, after) == {fc: 1}, \
            f"{d}/{t} = {v!r}: expected exactly one FC{fc} write, PLC saw {fc_writes(before, after)}"


def test_float32_every_byte_order(tmp_path, broker, make_collector, make_commander,
                                  make_agent, make_plc):
    plc = make_plc()
    orders = ["ABCD", "CDAB", "BADC", "DCBA"]
    tags = [{"name": f"f_{o.lower()}", "table": "holding", "address": 300 + 10 * i,
             "type": "float32", "byte_order": o, "writable": True} for i, o in enumerate(orders)]
    # the device default applies when a tag has none
    tags.append({"name": "f_dev", "table": "holding", "address": 400, "type": "float32",
                 "writable": True})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags, byte_order="CDAB")], ready=("plc1", "f_abcd"))
    for i, o in enumerate(orders):
        for v in (123.456, -0.15625):
            res = rig.ok("plc1", f"f_{o.lower()}", v)
            assert res["v"] == v, res
            got = plc.get("holding", 300 + 10 * i, 2)
            want = encode("float32", v, o)
            assert got == want, f"{o} {v}: PLC registers {[hex(x) for x in got]}, " \
                                f"want {[hex(x) for x in want]}"
    rig.ok("plc1", "f_dev", 123.456)
    assert plc.get("holding", 400, 2) == encode("float32", 123.456, "CDAB") == [0xE979, 0x42F6]


def test_scaled_writes_inverse_scale_and_offset(tmp_path, broker, make_collector,
                                                make_commander, make_agent, make_plc):
    plc = make_plc()
    tags = [{"name": "t01", "table": "holding", "address": 10, "type": "int16", "scale": 0.1,
             "writable": True},
            {"name": "lvl", "table": "holding", "address": 11, "type": "uint16", "scale": 0.5,
             "offset": -10.0, "writable": True},
            {"name": "big", "table": "holding", "address": 12, "type": "int32", "scale": 0.01,
             "offset": 100.0, "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags)], ready=("plc1", "t01"))

    res = rig.ok("plc1", "t01", 21.5)       # 21.5 / 0.1 = 214.99999999999997 -> 215
    assert plc.get("holding", 10) == [215], plc.get("holding", 10)
    assert res["v"] == pytest.approx(21.5, abs=1e-9), res
    rig.ok("plc1", "t01", -3.2)
    assert plc.get("holding", 10) == encode("int16", -32), plc.get("holding", 10)
    rig.ok("plc1", "lvl", 5)                # (5 - -10) / 0.5 = 30
    assert plc.get("holding", 11) == [30]
    res = rig.ok("plc1", "lvl", -10)        # the offset alone: raw 0
    assert plc.get("holding", 11) == [0] and res["v"] == pytest.approx(-10), res
    rig.ok("plc1", "big", -250.5)           # (-250.5 - 100) / 0.01 = -35050
    assert plc.get("holding", 12, 2) == encode("int32", -35050)

    # after inverse scaling the raw value must fit the raw type
    before = rig.writes()
    rig.refused("plc1", "t01", {"v": 4000}, "not_representable")      # raw 40000 > int16
    rig.refused("plc1", "lvl", {"v": -10.5}, "not_representable")     # raw -1 < uint16
    rig.refused("plc1", "t01", {"v": 21.55}, "not_representable")     # raw 215.5
    assert fc_writes(before, rig.writes()) == {}
    assert plc.get("holding", 10, 2) == [encode("int16", -32)[0], 0]


# ================================================================ bit in register

BIT_TAG = {"name": "b3", "table": "holding", "address": 50, "bit": 3, "type": "bool",
           "writable": True}


def _bit_sequence(rig, plc):
    """0xA5A5 in the PLC, then bit 3 on / off while the poll keeps reading
    register 50; between commands the PLC changes the other bits itself, so
    a read-modify-write from a stale poll image would show."""
    plc.set("holding", 50, 0xA5A5)
    rig.col.wait_message(f"{PREFIX}/plc1/b3", lambda d: d.get("v") is False, timeout=5)
    steps = [(True, 0xA5A5, 0xA5AD), (False, 0xA5AD, 0xA5A5)]
    for on, start, want in steps:
        plc.set("holding", 50, start)
        res = rig.ok("plc1", "b3", on)
        assert res["v"] is on, res
        got = plc.get("holding", 50)[0]
        assert got == want, f"bit 3 := {on} on {start:#06x}: register {got:#06x}, want {want:#06x}"
    # the PLC's own logic flips other bits between the poll and the command
    for start in (0x5A52, 0xFFF7, 0x0000, 0xFFFF):
        for on in (True, False):
            plc.set("holding", 50, start)
            rig.ok("plc1", "b3", on)
            got = plc.get("holding", 50)[0]
            want = (start | 0x0008) if on else (start & ~0x0008)
            assert got == want, \
                f"bit 3 := {on} on {start:#06x}: register {got:#06x}, want {want:#06x} " \
                f"(other bits changed: {(got ^ want):#06x})"


def test_bit_in_register_mask_write_keeps_other_bits_while_polling(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    plc = make_plc()
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [BIT_TAG], poll_ms=100)], ready=("plc1", "b3"))
    plc.reset_stats()
    _bit_sequence(rig, plc)
    st = plc.stats()
    writes = st["writes"]
    assert set(writes) == {"22"} and writes["22"] == 10, \
        f"bit writes must all be FC22 mask writes, PLC saw {writes}"
    # polling really ran on the same register during the test
    polls = [r for r in st["requests"] if r[0] == 3 and r[1] <= 50 < r[1] + r[2]]
    assert len(polls) >= 3, f"only {len(polls)} reads of register 50 during the test"


def test_bit_in_register_falls_back_to_read_write_without_fc22(
        tmp_path, broker, make_collector, make_commander, make_agent, make_custom_plc):
    plc = make_custom_plc("--no-fc22")
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [BIT_TAG], poll_ms=100)], ready=("plc1", "b3"))
    plc.reset_stats()
    _bit_sequence(rig, plc)
    writes = plc.stats()["writes"]
    assert set(writes) == {"6"} and writes["6"] == 10, \
        f"without FC22 the bit writes go FC03 + FC06; PLC saw writes {writes}"
    rig.agent.wait_log(r"no mask write \(FC22\) support", timeout=1)


# ================================================================ result, publish, audit

def test_result_id_new_value_published_and_audit_lines(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    plc = make_plc(init={"holding": {"200": 7}})
    # the tag is polled once at start, then not for a minute: any later
    # sample on P/plc1/sp comes from the write
    sp = dict(SP, poll_ms=60000)
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [sp])], ready=("plc1", "sp"))
    topic = f"{PREFIX}/plc1/sp"
    first = rig.col.messages(topic)
    assert [json.loads(m.payload)["v"] for m in first] == [7], first

    mark = rig.col.mark()
    t0_wall = time.time()
    t0 = rig.cmd.send("plc1", "sp", {"v": 42, "id": "abc", "ts": now_ms()})
    res = rig.result("plc1", "sp", "abc", after=mark)
    t_res = time.monotonic()
    assert res["ok"] is True and res["v"] == 42 and res["id"] == "abc", res
    assert isinstance(res["ts"], int) and abs(res["ts"] - now_ms()) < 5000, res
    assert t_res - t0 < 1.0 * SLOW, f"result took {t_res - t0:.2f} s"
    assert plc.get("holding", 200) == [42]
    # the new value on P/D/T at once, not at the next poll (a minute away)
    m = rig.col.wait_message(topic, lambda d: d.get("v") == 42, timeout=2, after=mark, raw=True)
    d = json.loads(m.payload)
    assert d.get("q") == "good" and isinstance(d.get("ts"), int), d
    assert m.time - t0_wall < 1.5, f"P/plc1/sp published {m.time - t0_wall:.2f} s after the command"
    assert not m.retain
    # result is not retained
    rmsg = rig.col.messages(result_topic("plc1", "sp"), after=mark)[0]
    assert not rmsg.retain
    rig.wait_audit(r"setpoint plc1/sp = 42 \(id abc\): ok in \d+(\.\d+)? ms")

    # a bare value: written, result carries the value
    mark = rig.col.mark()
    rig.cmd.send("plc1", "sp", "43")
    res = rig.col.wait_message(result_topic("plc1", "sp"), timeout=5, after=mark)
    assert res["ok"] is True and res["v"] == 43, res
    assert plc.get("holding", 200) == [43]
    rig.col.wait_message(topic, lambda d: d.get("v") == 43, timeout=2, after=mark)
    rig.wait_audit(r"setpoint plc1/sp = 43 \(id [^)]*\): ok in \d+(\.\d+)? ms")

    # rejected: result with id and detail, an audit line, nothing written
    before = rig.writes()
    res = rig.refused("plc1", "sp", {"v": 1600}, "out_of_range", cid="x",
                      detail=r"^1600 > max 1500$")
    assert res == {"id": "x", "ok": False, "error": "out_of_range",
                   "detail": "1600 > max 1500"}, res
    rig.wait_audit(r"setpoint plc1/sp = 1600 \(id x\): rejected: out_of_range 1600 > max 1500")
    assert fc_writes(before, rig.writes()) == {} and plc.get("holding", 200) == [43]


# ================================================================ validation errors

def test_validation_errors_from_mqtt_and_nothing_written(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    """unknown_tag, not_writable, bad_payload, bad_type, out_of_range,
    not_representable, stale: each from a real MQTT message, with the id
    echoed, an audit line, and no write reaching the PLC."""
    plc = make_plc(init={"holding": {"200": 7, "201": 5, "202": 3}})
    tags = [SP,
            {"name": "ro", "table": "holding", "address": 201, "type": "uint16"},
            {"name": "i16", "table": "holding", "address": 202, "type": "int16", "writable": True,
             "min": -100, "max": 100},
            {"name": "run", "table": "coil", "address": 0, "type": "bool", "writable": True},
            {"name": "door", "table": "discrete", "address": 0, "type": "bool"}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags)], ready=("plc1", "sp"))
    plc.reset_stats()
    R = rig.refused

    R("plc1", "nosuch", {"v": 1}, "unknown_tag")
    R("nodev", "sp", {"v": 1}, "unknown_tag")
    R("plc1", "ro", {"v": 1}, "not_writable")
    R("plc1", "door", {"v": True}, "not_writable")

    # what the topic says is judged before the payload
    R("plc1", "nosuch", b"{not json", "unknown_tag")
    R("plc1", "ro", b"", "not_writable")

    R("plc1", "sp", b"{not json", "bad_payload")
    R("plc1", "sp", b"", "bad_payload")
    R("plc1", "sp", b"[1,2]", "bad_payload")
    R("plc1", "sp", b"null", "bad_payload")
    R("plc1", "sp", {"value": 1}, "bad_payload")      # typo for "v": never a write
    R("plc1", "sp", {"ts": now_ms()}, "bad_payload")  # no "v"

    R("plc1", "sp", {"v": "abc"}, "bad_type")
    R("plc1", "sp", {"v": True}, "bad_type")
    R("plc1", "run", {"v": 1}, "bad_type")
    R("plc1", "run", {"v": "on"}, "bad_type")

    R("plc1", "sp", {"v": 1600}, "out_of_range", detail=r"1600 > max 1500")
    R("plc1", "sp", {"v": -1}, "out_of_range", detail=r"-1 < min 0")
    R("plc1", "i16", {"v": 100.5}, "out_of_range")

    R("plc1", "i16", {"v": 1.5}, "not_representable")
    R("plc1", "sp", {"v": 0.5}, "not_representable")

    R("plc1", "sp", {"v": 100, "ts": now_ms() - 60_000}, "stale")   # max_age_s 30
    R("plc1", "sp", {"v": 100, "ts": now_ms() + 60_000}, "stale")   # from the future
    R("plc1", "run", {"v": True, "ts": now_ms() - 3_600_000}, "stale")
    R("plc1", "sp", {"v": 100, "ts": time.time() * 1000 - 60_000}, "stale")  # a real ts

    st = plc.stats()
    assert st["writes"] == {}, f"refused commands reached the PLC: {st['writes']}"
    assert plc.get("holding", 200, 3) == [7, 5, 3]
    assert plc.get("coil", 0) == [False]

    log = rig.agent.log_text()
    for code in ("unknown_tag", "not_writable", "bad_payload", "bad_type", "out_of_range",
                 "not_representable", "stale"):
        assert re.search(r"setpoint \S+ = .* \(id .*\): rejected: " + code, log), \
            f"no audit line for {code}:\n{rig.agent.log_tail(40)}"
    assert re.search(r"setpoint plc1/sp = .*1600.* \(id out_of_range-\w+\): rejected: "
                     r"out_of_range 1600 > max 1500", log), rig.agent.log_tail(40)

    # a fresh, valid command still goes through, with an integer or a real ts
    rig.ok("plc1", "sp", 100, ts=now_ms())
    assert plc.get("holding", 200) == [100]
    rig.ok("plc1", "sp", 101, ts=time.time() * 1000)
    assert plc.get("holding", 200) == [101]


def test_disabled(tmp_path, broker, make_collector, make_commander, make_agent, make_plc,
                  mbgate_bin):
    plc = make_plc(init={"holding": {"200": 7}})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP])], ready=("plc1", "sp"),
                    setpoints={"enabled": False})
    plc.reset_stats()
    # the control socket refuses too
    r = cli_write(mbgate_bin, rig.conf, "plc1", "sp", "42")
    assert r.returncode == 1 and "disabled" in r.stderr, (r.returncode, r.stdout, r.stderr)
    # a command on MQTT gets an answer, not silence
    rig.refused("plc1", "sp", {"v": 42}, "disabled", timeout=3)
    rig.wait_audit(r"setpoint plc1/sp = .* rejected: disabled")
    assert plc.stats()["writes"] == {} and plc.get("holding", 200) == [7]


# ================================================================ retained, rate

def test_retained_command_refused_and_nothing_written(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    """A retained command (here: waiting at the broker when the agent
    subscribes — the replay hazard) is refused; no write reaches the PLC."""
    plc = make_plc(init={"holding": {"200": 7}})
    conf = write_config(tmp_path, [dev("plc1", plc.port, [SP])], broker.port)
    col = make_collector("#")
    cmd = make_commander()
    cmd.send("plc1", "sp", {"v": 99, "id": "ret-1"}, retain=True)
    plc.reset_stats()
    agent = make_agent(conf).start()
    rig = Rig(col, cmd, agent, plc, conf)
    res = rig.result("plc1", "sp", "ret-1", timeout=10)
    assert res.get("ok") is False and res.get("error") == "retained", res
    rig.wait_ready("plc1", "sp")
    rig.wait_audit(r"setpoint plc1/sp = .*\(id ret-1\): rejected: retained")
    time.sleep(0.3)  # a late write would show up here
    assert plc.stats()["writes"] == {}, plc.stats()["writes"]
    assert plc.get("holding", 200) == [7]
    # clear the retained command, then a live command works
    cmd.send("plc1", "sp", b"", retain=True)
    rig.ok("plc1", "sp", 11)
    assert plc.get("holding", 200) == [11]


def test_retained_publish_while_agent_runs_refused_mqtt5(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc):
    """A command published with retain=True while the agent is subscribed.
    Under MQTT 5 the agent can see the retain flag (Retain As Published);
    it must refuse the command and write nothing."""
    plc = make_plc(init={"holding": {"200": 7}})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP])], protocol="5", ready=("plc1", "sp"))
    plc.reset_stats()
    rig.cmd.send("plc1", "sp", {"v": 99, "id": "ret-live"}, retain=True)
    try:
        res = rig.result("plc1", "sp", "ret-live", timeout=5)
        time.sleep(0.2)
        assert res.get("ok") is False and res.get("error") == "retained", \
            f"live retained command: {res}; PLC register now {plc.get('holding', 200)}, " \
            f"writes {plc.stats()['writes']}"
        assert plc.stats()["writes"] == {} and plc.get("holding", 200) == [7]
    finally:
        rig.cmd.send("plc1", "sp", b"", retain=True)


def test_rate_limited(tmp_path, broker, make_collector, make_commander, make_agent, make_plc,
                      mbgate_bin):
    plc = make_plc()
    other = {"name": "sp2", "table": "holding", "address": 201, "type": "uint16",
             "writable": True}
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP, other])], ready=("plc1", "sp"),
                    setpoints={"max_rate": 2})
    plc.reset_stats()
    mark = rig.col.mark()
    ids = [f"burst-{i}" for i in range(5)]
    for i, cid in enumerate(ids):
        rig.cmd.client.publish(f"{PREFIX}/plc1/sp/set", json.dumps({"v": 100 + i, "id": cid}),
                               qos=1)
    res = {d["id"]: d for d in rig.col.wait_messages(result_topic("plc1", "sp"), 5,
                                                     timeout=5, after=mark)}
    ok = [c for c in ids if res[c]["ok"]]
    limited = [c for c in ids if res[c].get("error") == "rate_limited"]
    assert ok == ids[:2] and limited == ids[2:], \
        f"max_rate 2, burst of 5: {[(c, res[c].get('error', 'ok')) for c in ids]}"
    assert plc.get("holding", 200) == [101]
    assert plc.stats()["writes"] == {"6": 2}, plc.stats()["writes"]
    rig.wait_audit(r"setpoint plc1/sp = .*\(id burst-4\): rejected: rate_limited")
    # per tag: another tag is not limited
    rig.ok("plc1", "sp2", 5)
    # and the bucket refills: 2 per second
    time.sleep(0.6)
    rig.ok("plc1", "sp", 200)
    assert plc.get("holding", 200) == [200]
    # mbgate write takes from the same bucket
    time.sleep(1.1)
    runs = [cli_write(mbgate_bin, rig.conf, "plc1", "sp2", str(v)) for v in range(7, 15)]
    codes = [r.returncode for r in runs]
    assert codes[:2] == [0, 0] and 1 in codes, codes
    assert "rate_limited" in runs[codes.index(1)].stderr, runs[codes.index(1)].stderr


def test_answered_at_once_while_the_window_is_full(
        tmp_path, broker, make_collector, make_commander, make_agent, make_plc, mbgate_bin):
    """300 tags every 50 ms keep the in-flight window busy, and then the
    agent batches PUBACK wake-ups (SO_RCVLOWAT): a command, a few bytes
    among the acks, must still be read and executed at once."""
    plc = make_plc()
    load = [{"name": f"t{i:03d}", "table": "holding", "address": i, "type": "uint16"}
            for i in range(300)]
    conf = write_config(tmp_path, [dev("plc1", plc.port, [SP] + load, poll_ms=50)], broker.port)
    ready = make_collector(f"{PREFIX}/plc1/sp")
    col = make_collector(f"{PREFIX}/plc1/sp/set/result")
    agent = make_agent(conf).start()
    rig = Rig(col, make_commander(), agent, plc, conf)
    ready.wait_message(f"{PREFIX}/plc1/sp", timeout=15)
    acked0 = agent_status(mbgate_bin, conf)["broker"]["acked"]
    t0 = time.monotonic()
    took = []
    for i in range(25):
        res, dt = rig.write("plc1", "sp", 100 + i, timeout=5 * SLOW)
        assert res.get("ok") is True, res
        assert plc.get("holding", 200) == [100 + i]
        took.append(dt)
        time.sleep(0.1)
    rate = (agent_status(mbgate_bin, conf)["broker"]["acked"] - acked0) / (time.monotonic() - t0)
    assert rate > 1500 / SLOW, f"only {rate:.0f} samples/s acknowledged: the window was not busy"
    # typical 25 ms (pymodbus answers the write and read-back between polls);
    # a command left waiting for the 100 ms loop tick shows as ~80 ms
    took.sort()
    assert took[len(took) // 2] < 0.06 * SLOW and took[-1] < 1.0 * SLOW, \
        f"results took {[round(t, 3) for t in took]} s"


# ================================================================ the bus

def test_device_down_answers_at_once(tmp_path, broker, make_collector, make_commander,
                                     make_agent, make_plc, black_hole):
    plc = make_plc(init={"holding": {"200": 7}})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP]),
                     dev("hole", black_hole, [SP], timeout_ms=300)],
                    ready=("plc1", "sp"))
    # a device that never answered
    rig.col.wait_message(f"{PREFIX}/hole/status", lambda d: d.get("state") == "down", timeout=5)
    res, took = rig.write("hole", "sp", 5)
    assert res.get("ok") is False and res.get("error") == "device_down", res
    assert took < 0.5 * SLOW, f"device_down took {took:.2f} s"

    # a device that was up and whose PLC went away
    plc.stop()
    rig.col.wait_message(f"{PREFIX}/plc1/status", lambda d: d.get("state") == "down", timeout=5)
    res, took = rig.write("plc1", "sp", 5)
    assert res.get("ok") is False and res.get("error") == "device_down", res
    assert took < 0.5 * SLOW, f"device_down took {took:.2f} s"
    assert res.get("detail"), res
    rig.wait_audit(r"setpoint plc1/sp = 5 \(id [^)]+\): rejected: device_down")
    # never queued for later: the PLC comes back (with its initial values)
    # and the refused value is not written then
    mark = rig.col.mark()
    plc.start()
    rig.col.wait_message(f"{PREFIX}/plc1/status", lambda d: d.get("state") == "up",
                         timeout=15, after=mark)
    rig.col.wait_message(f"{PREFIX}/plc1/sp", lambda d: d.get("q") == "good", timeout=5,
                         after=mark)
    time.sleep(0.3)
    assert plc.get("holding", 200) == [7], "a refused command was executed later"
    assert plc.stats()["writes"] == {}, plc.stats()["writes"]


def test_timeout_plc_stops_answering(tmp_path, broker, make_collector, make_commander,
                                     make_agent, make_plc):
    """The device is up; the PLC process is frozen (SIGSTOP: the TCP
    connection stays open, nothing answers); the command times out within
    timeout_ms x (retries + 1)."""
    plc = make_plc(init={"holding": {"200": 7}})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP], poll_ms=1000, timeout_ms=300, retries=0)],
                    ready=("plc1", "sp"))
    # right after a poll (once its answer is out), so that the next one is
    # ~1 s away and the device is still up when the command arrives
    n = sum(plc.stats()["reads"].values())
    wait_for(lambda: sum(plc.stats()["reads"].values()) > n, 5, "a poll", interval=0.005)
    time.sleep(0.05)
    plc.signal(signal.SIGSTOP)
    try:
        t0 = rig.cmd.send("plc1", "sp", {"v": 55, "id": "to-1"})
        res = rig.result("plc1", "sp", "to-1", timeout=5)
        took = time.monotonic() - t0
    finally:
        plc.signal(signal.SIGCONT)
    assert res.get("ok") is False and res.get("error") == "timeout", res
    assert took < 1.0 * SLOW, f"timeout answered after {took:.2f} s (timeout_ms 300, retries 0)"
    rig.wait_audit(r"setpoint plc1/sp = 55 \(id to-1\): rejected: timeout")
    # the agent recovers and writes again
    rig.col.wait_message(f"{PREFIX}/plc1/sp", lambda d: d.get("q") == "good", timeout=10,
                         after=rig.col.mark())
    wait_for(lambda: (rig.write("plc1", "sp", 66)[0].get("ok") is True), 10,
             "a write after the PLC answers again", interval=0.3)
    assert plc.get("holding", 200) == [66]


def test_modbus_exception_names_the_exception(tmp_path, broker, make_collector,
                                              make_commander, make_agent, make_custom_plc):
    plc = make_custom_plc("--size", 10, init={"holding": {"0": 3}})
    tags = [{"name": "ok", "table": "holding", "address": 0, "type": "uint16", "writable": True},
            {"name": "far", "table": "holding", "address": 100, "type": "uint16",
             "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags, max_gap=0)], ready=("plc1", "ok"))
    res, took = rig.write("plc1", "far", 5, cid="ex-1")
    assert res.get("ok") is False and res.get("error") == "modbus_exception", res
    assert "Illegal data address" in res.get("detail", ""), res
    assert took < 1.0 * SLOW, took
    rig.wait_audit(r"setpoint plc1/far = 5 \(id ex-1\): rejected: modbus_exception .*"
                   r"Illegal data address")
    # the device stays up and other tags remain writable
    rig.ok("plc1", "ok", 4)
    assert plc.get("holding", 0) == [4]


def test_verify_failed_when_the_plc_ignores_writes(tmp_path, broker, make_collector,
                                                   make_commander, make_agent, make_custom_plc):
    plc = make_custom_plc("--ignore-writes", init={"holding": {"5": 7, "6": 8},
                                                   "coil": {"2": False}})
    tags = [{"name": "sp", "table": "holding", "address": 5, "type": "uint16", "writable": True},
            {"name": "nover", "table": "holding", "address": 6, "type": "uint16",
             "writable": True, "verify": False},
            {"name": "run", "table": "coil", "address": 2, "type": "bool", "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags)], ready=("plc1", "sp"))
    plc.reset_stats()
    res, _ = rig.write("plc1", "sp", 42, cid="vf-1")
    assert res.get("ok") is False and res.get("error") == "verify_failed", res
    assert "7" in res.get("detail", "") and "42" in res.get("detail", ""), res
    assert plc.stats()["writes"] == {"6": 1}, "the write did reach the PLC"
    assert plc.get("holding", 5) == [7]
    rig.wait_audit(r"setpoint plc1/sp = 42 \(id vf-1\): rejected: verify_failed")
    res, _ = rig.write("plc1", "run", True, cid="vf-2")
    assert res.get("error") == "verify_failed", res
    # verify = false: no read-back, the write is reported as done
    res = rig.ok("plc1", "nover", 9)
    assert res["v"] == 9, res


# ================================================================ MQTT 5, CLI

def test_mqtt5_response_topic_and_correlation_data(tmp_path, broker, make_collector,
                                                    make_commander, make_agent, make_plc):
    plc = make_plc(init={"holding": {"200": 7}})
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, [SP])], protocol="5", ready=("plc1", "sp"))
    replies = make_collector("reply/#", protocol="5")

    def request(v, cid, rt, corr):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = rt
        props.CorrelationData = corr
        rig.cmd.send("plc1", "sp", {"v": v, "id": cid}, properties=props)
        m = replies.wait_message(rt, lambda d: d.get("id") == cid, timeout=5, raw=True)
        got = getattr(m.properties, "CorrelationData", None)
        assert got == corr, f"correlation data {got!r}, sent {corr!r}"
        return json.loads(m.payload)

    res = request(42, "m5-1", "reply/x", b"abc")
    assert res["ok"] is True and res["v"] == 42, res
    assert plc.get("holding", 200) == [42]
    # the result topic gets it too
    res2 = rig.result("plc1", "sp", "m5-1")
    assert res2 == res, (res, res2)
    # a refusal goes back the same way
    res = request(1600, "m5-2", "reply/y", bytes(range(256)))
    assert res["ok"] is False and res["error"] == "out_of_range", res
    assert plc.get("holding", 200) == [42]
    # without Response Topic nothing goes to reply/
    n = len(replies.messages())
    rig.ok("plc1", "sp", 43)
    time.sleep(0.2)
    assert len(replies.messages()) == n


def cli_write(mbgate_bin, conf, *args):
    """`mbgate write -c CONF D T VALUE` (options first: see the next test
    for options after the arguments)."""
    return run_cli(mbgate_bin, "write", "-c", conf, *args, timeout=10)


def test_cli_write_same_validation_and_reaches_plc(tmp_path, broker, make_collector,
                                                   make_commander, make_agent, make_plc,
                                                   mbgate_bin):
    plc = make_plc(init={"holding": {"200": 7}})
    tags = [dict(SP, poll_ms=60000),
            {"name": "ro", "table": "holding", "address": 201, "type": "uint16"},
            {"name": "i16", "table": "holding", "address": 202, "type": "int16", "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags)], ready=("plc1", "sp"))
    plc.reset_stats()
    for args, code in [(("sp", "1600"), "out_of_range"), (("ro", "1"), "not_writable"),
                       (("nosuch", "1"), "unknown_tag"), (("sp", "abc"), "bad_type"),
                       (("i16", "1.5"), "not_representable")]:
        r = cli_write(mbgate_bin, rig.conf, "plc1", *args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert code in r.stderr, (args, code, r.stderr)
    r = cli_write(mbgate_bin, rig.conf, "plc1", "sp", "1600")
    assert r.returncode == 1 and "1600 > max 1500" in r.stderr, r.stderr
    assert plc.stats()["writes"] == {}
    rig.wait_audit(r"setpoint plc1/sp = 1600 \(id [^)]*\): rejected: out_of_range 1600 > max 1500")

    mark = rig.col.mark()
    r = cli_write(mbgate_bin, rig.conf, "plc1", "sp", "1234")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "1234" in r.stdout, r.stdout
    assert plc.get("holding", 200) == [1234]
    assert plc.stats()["writes"] == {"6": 1}
    rig.wait_audit(r"setpoint plc1/sp = 1234 \(id [^)]*\): ok in \d+(\.\d+)? ms")
    # same as MQTT: the new value is published at once
    rig.col.wait_message(f"{PREFIX}/plc1/sp", lambda d: d.get("v") == 1234, timeout=2, after=mark)


def test_cli_write_with_options_after_the_arguments(tmp_path, broker, make_collector,
                                                    make_commander, make_agent, make_plc,
                                                    mbgate_bin):
    """The issue's form `mbgate write D T VALUE -c CONF` (as `mbgate read D T
    -c CONF` elsewhere); a negative VALUE must still be a value, not an option."""
    plc = make_plc(init={"holding": {"200": 7}})
    tags = [SP, {"name": "i16", "table": "holding", "address": 202, "type": "int16",
                 "writable": True}]
    rig = start_rig(tmp_path, broker, make_collector, make_commander, make_agent, plc,
                    [dev("plc1", plc.port, tags)], ready=("plc1", "sp"))
    r = run_cli(mbgate_bin, "write", "plc1", "sp", "1600", "-c", rig.conf, timeout=10)
    assert r.returncode == 1 and "out_of_range" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = run_cli(mbgate_bin, "write", "plc1", "sp", "1234", "-c", rig.conf, timeout=10)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert plc.get("holding", 200) == [1234]
    r = run_cli(mbgate_bin, "write", "plc1", "i16", "-5", "-c", rig.conf, timeout=10)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert plc.get("holding", 202) == encode("int16", -5)
