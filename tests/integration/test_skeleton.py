"""End-to-end skeleton tests: PLC (mbgate sim / pymodbus) -> mbgate run -> mosquitto.

SPEC.md §2 (CLI), §3 (config), §4 (topics and payloads). P = "mbgate/itest".
"""
import json
import re
import subprocess
import time

import pytest

from conftest import (PREFIX, assert_clean_stderr, encode, encode_string,
                      fetch_retained, free_port, line_of, now_ms, run_cli,
                      tcp_device, wait_for, write_config)

STATUS = f"{PREFIX}/status"


# ---------------------------------------------------------------- helpers

def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_good(msg, topic=None):
    """A good sample {"v":…,"ts":…,"q":"good"} whose ts (ms) is close to the
    moment it arrived. Returns the decoded payload."""
    d = json.loads(msg.payload)
    where = topic or msg.topic
    assert d.get("q") == "good", f"{where}: {d}"
    assert "v" in d and d["v"] is not None, f"{where}: {d}"
    assert isinstance(d.get("ts"), int) and not isinstance(d["ts"], bool), f"{where}: {d}"
    # ts is taken when the PLC answered; the message may sit in the outbox a bit
    assert abs(d["ts"] - msg.time * 1000) < 5000, f"{where}: ts {d['ts']} vs now {msg.time * 1000:.0f}"
    return d


def json_type_ok(tag, v):
    t = tag["type"]
    if t == "bool":
        return type(v) is bool
    if t == "string":
        return isinstance(v, str)
    if t in ("float32", "float64") or "scale" in tag or "offset" in tag:
        return is_number(v)
    return type(v) is int  # integers print as integers


def v_text_re(text):
    """The raw payload contains "v":TEXT (any JSON whitespace) as a whole number."""
    return re.compile(r'"v"\s*:\s*' + re.escape(text) + r'\s*[,}]')


def start_sim_and_agent(tmp_path, broker, make_sim, make_agent, tags, device="sim1",
                        dev_kw=None, **overrides):
    port = free_port()
    conf = write_config(tmp_path, [tcp_device(device, port, tags, **(dev_kw or {}))],
                        broker.port, **overrides)
    sim = make_sim(conf, port).start()
    agent = make_agent(conf).start()
    return conf, sim, agent


# Tags for `mbgate sim`: each type, each table, each sim mode.
SIM_TAGS = [
    {"name": "counter", "table": "holding", "address": 0, "type": "uint16", "sim": "counter"},
    {"name": "fixed42", "table": "holding", "address": 1, "type": "int16", "sim": "fixed", "sim_value": 42},
    {"name": "fixed_db", "table": "holding", "address": 2, "type": "int16", "sim": "fixed", "sim_value": 7,
     "deadband": 0},
    {"name": "fixed_hb", "table": "holding", "address": 3, "type": "int16", "sim": "fixed", "sim_value": 9,
     "deadband": 0, "heartbeat_s": 1},
    {"name": "temp", "table": "holding", "address": 10, "type": "float32", "sim": "drift",
     "min": 10, "max": 30, "unit": "degC"},
    {"name": "energy", "table": "holding", "address": 20, "type": "int64", "sim": "fixed", "sim_value": -5},
    {"name": "label", "table": "holding", "address": 30, "type": "string", "length": 8, "sim": "fixed",
     "sim_value": "MBGATE-1"},
    {"name": "alarm", "table": "holding", "address": 40, "bit": 3, "type": "bool"},
    {"name": "run", "table": "coil", "address": 0, "type": "bool", "sim": "toggle"},
    {"name": "door", "table": "discrete", "address": 5, "type": "bool"},
    {"name": "level", "table": "input", "address": 0, "type": "float32", "min": 0, "max": 100},
    {"name": "half", "table": "input", "address": 10, "type": "float32", "sim": "fixed", "sim_value": 1.5},
]


# ---------------------------------------------------------------- (a) sim -> agent -> broker

def test_sim_birth_status_and_every_tag(broker, collector, make_sim, make_agent, tmp_path,
                                        mbgate_bin):
    start_sim_and_agent(tmp_path, broker, make_sim, make_agent, SIM_TAGS)

    birth = collector.wait_message(STATUS, lambda d: d.get("state") == "online", timeout=15)
    assert isinstance(birth.get("ts"), int) and abs(birth["ts"] - now_ms()) < 10000, birth
    assert isinstance(birth.get("version"), str) and birth["version"], birth
    ver = run_cli(mbgate_bin, "--version")
    assert ver.returncode == 0 and birth["version"] in ver.stdout + ver.stderr, (birth, ver)

    up = collector.wait_message(f"{PREFIX}/sim1/status", lambda d: d.get("state") == "up", timeout=15)
    assert isinstance(up.get("ts"), int), up

    # every tag publishes a good sample of the right JSON type
    values = {}
    for tag in SIM_TAGS:
        topic = f"{PREFIX}/sim1/{tag['name']}"
        m = collector.wait_message(topic, lambda d: d.get("q") == "good", timeout=10, raw=True)
        d = check_good(m)
        assert json_type_ok(tag, d["v"]), f"{topic}: {d} is not a JSON {tag['type']}"
        values[tag["name"]] = d["v"]
    assert values["fixed42"] == 42
    assert v_text_re("42").search(collector.messages(f"{PREFIX}/sim1/fixed42")[0].payload.decode())
    assert values["energy"] == -5
    assert values["label"] == "MBGATE-1"
    assert values["half"] == 1.5
    assert 10 <= values["temp"] <= 30, values["temp"]
    assert 0 <= values["level"] <= 100, values["level"]

    # retained: birth and device status, seen by a fresh subscriber
    m = fetch_retained(broker.port, STATUS, predicate=lambda d: d.get("state") == "online")
    assert m is not None, "P/status is not retained as online"
    m = fetch_retained(broker.port, f"{PREFIX}/sim1/status", predicate=lambda d: d.get("state") == "up")
    assert m is not None, "P/sim1/status is not retained as up"

    # counter: every sample arrives, each exactly one more than the previous
    ctopic = f"{PREFIX}/sim1/counter"

    def contiguous():
        ds = collector.payloads(ctopic)
        vs = [d["v"] for d in ds]
        if len(vs) < 20:
            return None
        return vs if sorted(vs) == list(range(min(vs), min(vs) + len(vs))) else None
    vs = wait_for(contiguous, 15, "20 contiguous counter samples",
                  diag=lambda: f"counter values: {[d['v'] for d in collector.payloads(ctopic)]}")
    got = [d["v"] for d in collector.payloads(ctopic)]
    assert len(set(vs)) == len(vs), f"duplicate counter samples: {got}"
    live = [d["v"] for d in collector.payloads(ctopic) if not d.get("hist")]
    assert live == sorted(live), f"live counter samples out of order: {got}"
    for d in collector.payloads(ctopic):
        assert d["q"] == "good"

    # no deadband: a message every poll, like the counter
    n_counter = len(collector.messages(ctopic))
    n_fixed = len(collector.messages(f"{PREFIX}/sim1/fixed42"))
    assert n_fixed >= 0.8 * n_counter, (n_fixed, n_counter)

    # heartbeat_s = 1 with deadband 0: republished about once a second
    hb = collector.wait_messages(f"{PREFIX}/sim1/fixed_hb", 3, timeout=8)
    assert all(d["v"] == 9 and d["q"] == "good" for d in hb), hb
    gaps = [(b["ts"] - a["ts"]) / 1000 for a, b in zip(hb, hb[1:])]
    assert all(0.9 <= g <= 2.5 for g in gaps), f"heartbeat gaps {gaps}"

    # deadband = 0 on a fixed value: published exactly once (> 3 s of polls by now)
    db = collector.payloads(f"{PREFIX}/sim1/fixed_db")
    assert len(db) == 1 and db[0]["v"] == 7, db


def test_layout_device(broker, collector, make_sim, make_agent, tmp_path):
    tags = [t for t in SIM_TAGS if t["name"] in ("counter", "fixed42", "temp", "run", "label", "half")]
    start_sim_and_agent(tmp_path, broker, make_sim, make_agent, tags, mqtt={"layout": "device"})
    topic = f"{PREFIX}/sim1"
    names = {t["name"] for t in tags}
    # SPEC §4: one message per device per cycle with every tag of the cycle
    # (its example holds a holding register and a coil together)
    collector.wait_message(topic, timeout=15)

    def full():
        ms = [m for m in collector.messages(topic)
              if names <= set(json.loads(m.payload).get("values", {}))
              and not json.loads(m.payload).get("hist")]
        return ms[:5] if len(ms) >= 5 else None
    msgs = wait_for(full, 5, f"5 messages on {topic} each holding every tag {sorted(names)} "
                    "(one message per device per cycle)",
                    diag=lambda: "last messages:\n" + "\n".join(
                        m.payload.decode() for m in collector.messages(topic)[-6:]))
    for m in msgs:
        d = json.loads(m.payload)
        assert isinstance(d.get("ts"), int) and abs(d["ts"] - m.time * 1000) < 5000, d
        vals = d["values"]
        for t in tags:
            assert json_type_ok(t, vals[t["name"]]), (t, vals)
        assert vals["fixed42"] == 42 and vals["half"] == 1.5 and vals["label"] == "MBGATE-1", vals
    counters = [json.loads(m.payload)["values"]["counter"] for m in msgs]
    assert counters == list(range(counters[0], counters[0] + len(counters))), counters
    # one message per device per cycle, no per-tag data topics
    for t in tags:
        assert not collector.messages(f"{topic}/{t['name']}"), f"per-tag topic {t['name']} in layout device"


# ---------------------------------------------------------------- (a) mbgate check

def test_check_prints_devices_tags_and_plan(mbgate_bin, tmp_path):
    tags = [
        {"name": "temp", "table": "holding", "address": 100, "type": "float32", "unit": "degC"},
        {"name": "sp", "table": "holding", "address": 104, "type": "uint16", "writable": True,
         "min": 0, "max": 1500},
        {"name": "run", "table": "coil", "address": 0, "type": "bool", "writable": True},
        {"name": "door", "table": "discrete", "address": 5, "type": "bool"},
        {"name": "flow", "table": "input", "address": 10, "type": "int16", "scale": 0.1},
    ]
    conf = write_config(tmp_path, [tcp_device("plc1", 1502, tags)], 1883)
    r = run_cli(mbgate_bin, "check", "-c", conf)
    assert_clean_stderr(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "plc1" in out, out
    for t in tags:
        assert t["name"] in out, (t["name"], out)
    for ref in ("40101", "40105", "00001", "10006", "30011"):
        assert ref in out, f"Modicon reference {ref} missing:\n{out}"
    assert re.search(r"plan|request", out, re.I), f"no read plan in:\n{out}"
    # temp+sp in one FC03, run, door, flow: 4 requests per 100-ms cycle
    assert re.search(r"^\s*4 requests per device cycle$", out, re.M), out

    # tags at other rates: the total is split by rate
    tags[4]["poll_ms"] = 10000
    conf = write_config(tmp_path, [tcp_device("plc1", 1502, tags)], 1883, filename="rates.conf")
    r = run_cli(mbgate_bin, "check", "-c", conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\s*4 requests per device cycle: 3 every 100 ms, 1 every 10000 ms$",
                     r.stdout, re.M), r.stdout


GOOD_TAG = '{ name = "ok1"; table = "holding"; address = 1; type = "uint16"; }'
INVALID_CASES = {
    # name: (tag lines to add, marker of the offending line)
    "unknown_tag_key": (['{ name = "t1"; table = "holding"; address = 5; type = "int16"; colour = "red"; }'],
                        "colour"),
    "bad_type": (['{ name = "t1"; table = "holding"; address = 5; type = "float33"; }'], "float33"),
    "bad_table": (['{ name = "t1"; table = "holdings"; address = 5; type = "int16"; }'], "holdings"),
    "duplicate_tag": (['{ name = "dup"; table = "holding"; address = 5; type = "int16"; }',
                       '{ name = "dup"; table = "holding"; address = 9; type = "int16"; }'],
                      'address = 9'),
    "bit_on_coil": (['{ name = "t1"; table = "coil"; address = 5; bit = 3; type = "bool"; }'], "bit = 3"),
    "writable_input": (['{ name = "t1"; table = "input"; address = 5; type = "int16"; writable = true; }'],
                       "writable"),
    "overlap_other_type": (['{ name = "a32"; table = "holding"; address = 20; type = "int32"; }',
                            '{ name = "b16"; table = "holding"; address = 21; type = "uint16"; }'],
                           '"b16"'),
    "missing_address": (['{ name = "t1"; table = "holding"; type = "int16"; }'], '"t1"'),
    "wrong_value_type": (['{ name = "t1"; table = "holding"; address = "five"; type = "int16"; }'],
                         '"five"'),
    "syntax_error": (['{ name = "t1"; table = "holding"; address = ; type = "int16"; }'], '"t1"'),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_check_rejects_invalid_config(mbgate_bin, tmp_path, case):
    lines, marker = INVALID_CASES[case]
    conf = write_config(tmp_path, [tcp_device("plc1", 1502, [])], 1883)
    text = conf.read_text().replace("    tags = (\n", "    tags = (\n      " + GOOD_TAG + ",\n      "
                                    + ",\n      ".join(lines) + "\n", 1)
    conf.write_text(text)
    line = line_of(conf, marker)
    r = run_cli(mbgate_bin, "check", "-c", conf)
    assert_clean_stderr(r.stderr)
    assert r.returncode == 1, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert f"{conf}:{line}:" in r.stderr, f"expected '{conf}:{line}:' in stderr:\n{r.stderr}"


def test_check_rejects_unknown_section_key(mbgate_bin, tmp_path):
    conf = write_config(tmp_path, [tcp_device("plc1", 1502, [
        {"name": "ok1", "table": "holding", "address": 1, "type": "uint16"}])],
        1883, mqtt={"protocl": "5"})
    r = run_cli(mbgate_bin, "check", "-c", conf)
    assert_clean_stderr(r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{conf}:{line_of(conf, 'protocl')}:" in r.stderr, r.stderr


# ---------------------------------------------------------------- (b) independent PLC, decoding

F32 = 123.456
I64 = -1234567890123456789
U64 = 18000000000000000000
F64 = 3.141592653589793
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def decoding_cases():
    """(tag, table, address, registers-or-bits, expected value, expected JSON text or None)"""
    cases = []

    def add(name, table, address, type_, data, expected, text=None, **kw):
        tag = {"name": name, "table": table, "address": address, "type": type_}
        tag.update(kw)
        cases.append((tag, data, expected, text))

    for i, o in enumerate(ORDERS):
        add(f"f32_{o.lower()}", "holding", 100 + 2 * i, "float32", encode("float32", F32, o), F32,
            "123.456", byte_order=o)
    add("i16", "holding", 110, "int16", [0xFFFE], -2, "-2")
    add("u16", "holding", 111, "uint16", [0xFFFE], 65534, "65534")
    add("i32_abcd", "holding", 112, "int32", encode("int32", -123456789, "ABCD"), -123456789, "-123456789")
    add("i32_cdab", "holding", 114, "int32", encode("int32", -123456789, "CDAB"), -123456789, "-123456789",
        byte_order="CDAB")
    add("u32_abcd", "holding", 116, "uint32", encode("uint32", 4000000000, "ABCD"), 4000000000, "4000000000")
    add("u32_dcba", "holding", 118, "uint32", encode("uint32", 4000000000, "DCBA"), 4000000000, "4000000000",
        byte_order="DCBA")
    for i, o in enumerate(ORDERS):
        add(f"i64_{o.lower()}", "holding", 120 + 4 * i, "int64", encode("int64", I64, o), I64, str(I64),
            byte_order=o)
        add(f"u64_{o.lower()}", "holding", 140 + 4 * i, "uint64", encode("uint64", U64, o), U64, str(U64),
            byte_order=o)
        add(f"f64_{o.lower()}", "holding", 160 + 4 * i, "float64", encode("float64", F64, o), F64,
            "3.141592653589793", byte_order=o)
    add("f32_tenth", "holding", 180, "float32", encode("float32", 0.1), 0.1, "0.1")
    add("text", "holding", 190, "string", encode_string("HELLO-42", 8), "HELLO-42", '"HELLO-42"', length=8)
    add("offset", "holding", 200, "uint16", [1000], 460, None, scale=0.5, offset=-40.0)
    add("bit3", "holding", 210, "bool", [0x0008], True, "true", bit=3)
    add("bit2", "holding", 210, "bool", [0x0008], False, "false", bit=2)
    add("bit15", "holding", 211, "bool", [0x8001], True, "true", bit=15)
    add("bit0", "holding", 211, "bool", [0x8001], True, "true", bit=0)
    add("bit1", "holding", 211, "bool", [0x8001], False, "false", bit=1)
    add("scaled", "input", 10, "int16", [215], 21.5, "21.5", scale=0.1)
    add("scaled_neg", "input", 11, "int16", encode("int16", -215), -21.5, "-21.5", scale=0.1)
    add("in_u16", "input", 20, "uint16", [4242], 4242, "4242")
    add("in_f32", "input", 22, "float32", encode("float32", -0.5), -0.5, "-0.5")
    add("in_bit", "input", 30, "bool", [0x0004], True, "true", bit=2)
    add("coil0", "coil", 0, "bool", [True], True, "true")
    add("coil1", "coil", 1, "bool", [False], False, "false")
    add("coil17", "coil", 17, "bool", [True], True, "true")
    add("di3", "discrete", 3, "bool", [True], True, "true")
    add("di4", "discrete", 4, "bool", [False], False, "false")
    return cases


def test_pymodbus_plc_decoding(broker, collector, make_plc, make_agent, tmp_path):
    cases = decoding_cases()
    init = {}
    for tag, data, _, _ in cases:
        table = init.setdefault(tag["table"], {})
        table[str(tag["address"])] = data
    plc = make_plc(init)

    # a third implementation agrees on the register layout (mbpoll is 1-based)
    r = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", "101", "-c", "1", "-t", "4:float", "-B",
                        "-1", "-p", str(plc.port), "127.0.0.1"], capture_output=True, text=True, timeout=10)
    assert "123.456" in r.stdout, r.stdout + r.stderr

    tags = [t for t, _, _, _ in cases]
    conf = write_config(tmp_path, [tcp_device("plc1", plc.port, tags, poll_ms=200)], broker.port)
    make_agent(conf).start()
    collector.wait_message(f"{PREFIX}/plc1/status", lambda d: d.get("state") == "up", timeout=15)
    failures = []
    for tag, data, expected, text in cases:
        topic = f"{PREFIX}/plc1/{tag['name']}"
        m = collector.wait_message(topic, lambda d: d.get("q") == "good", timeout=10, raw=True)
        d = check_good(m)
        v = d["v"]
        if type(v) is not type(expected) or v != expected:
            failures.append(f"{tag['name']}: got {v!r} ({type(v).__name__}), expected {expected!r}; "
                            f"registers {[hex(x) if not isinstance(x, bool) else x for x in data]}")
        elif text is not None and not v_text_re(text).search(m.payload.decode()):
            failures.append(f"{tag['name']}: payload {m.payload!r} does not print v as {text}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- (c) PLC outage and recovery

OUTAGE_TAGS = [
    {"name": "a", "table": "holding", "address": 0, "type": "uint16", "sim": "fixed", "sim_value": 5},
    {"name": "b", "table": "holding", "address": 2, "type": "float32", "sim": "fixed", "sim_value": 1.5},
    {"name": "c", "table": "coil", "address": 0, "type": "bool", "sim": "toggle"},
    {"name": "d", "table": "holding", "address": 4, "type": "int16", "sim": "fixed", "sim_value": -3,
     "deadband": 0},
]
OUTAGE_INIT = {"holding": {"0": 5, "2": encode("float32", 1.5), "4": encode("int16", -3)},
               "coil": {"0": True}}


@pytest.mark.parametrize("plc_kind", ["sim", "pymodbus"])
def test_plc_outage_and_recovery(plc_kind, broker, collector, make_sim, make_plc, make_agent, tmp_path):
    if plc_kind == "sim":
        port = free_port()
        conf = write_config(tmp_path, [tcp_device("dev", port, OUTAGE_TAGS)], broker.port)
        plc = make_sim(conf, port).start()
    else:
        plc = make_plc(OUTAGE_INIT)
        conf = write_config(tmp_path, [tcp_device("dev", plc.port, OUTAGE_TAGS)], broker.port)
    port = plc.port
    make_agent(conf).start()
    dstatus = f"{PREFIX}/dev/status"
    collector.wait_message(dstatus, lambda d: d.get("state") == "up", timeout=15)
    for t in OUTAGE_TAGS:
        collector.wait_message(f"{PREFIX}/dev/{t['name']}", lambda d: d.get("q") == "good", timeout=10)

    # PLC crashes
    mk = collector.mark()
    plc.kill()
    down = collector.wait_message(dstatus, lambda d: d.get("state") == "down", timeout=15, after=mk)
    assert isinstance(down.get("error"), str) and down["error"], down
    assert isinstance(down.get("ts"), int), down
    for t in OUTAGE_TAGS:
        bad = collector.wait_message(f"{PREFIX}/dev/{t['name']}", lambda d: d.get("q") == "bad",
                                     timeout=10, after=mk)
        assert "v" in bad and bad["v"] is None, bad
        assert isinstance(bad.get("error"), str) and bad["error"], bad
        assert isinstance(bad.get("ts"), int), bad
    m = fetch_retained(broker.port, dstatus, predicate=lambda d: d.get("state") == "down")
    assert m is not None, "device status down is not retained"
    # observe the outage for a while: reconnect attempts must not republish "bad"
    time.sleep(1.5)

    # PLC back on the same port
    mk2 = collector.mark()
    plc.start()
    assert plc.port == port
    collector.wait_message(dstatus, lambda d: d.get("state") == "up", timeout=35, after=mk2)
    for t in OUTAGE_TAGS:   # good values flow again, also for the deadband tag
        collector.wait_message(f"{PREFIX}/dev/{t['name']}", lambda d: d.get("q") == "good",
                               timeout=10, after=mk2)
    for t in OUTAGE_TAGS:
        bads = [d for d in collector.payloads(f"{PREFIX}/dev/{t['name']}", after=mk) if d.get("q") == "bad"]
        assert len(bads) == 1, f"tag {t['name']} published bad {len(bads)} times: {bads}"
    downs = [d for d in collector.payloads(dstatus, after=mk) if d.get("state") == "down"]
    assert len(downs) == 1, f"device status down published {len(downs)} times: {downs}"


# ---------------------------------------------------------------- (d) broker restart

def test_broker_restart(broker, collector, make_collector, make_sim, make_agent, tmp_path):
    tags = [t for t in SIM_TAGS if t["name"] in ("counter", "fixed42")]
    start_sim_and_agent(tmp_path, broker, make_sim, make_agent, tags)
    collector.wait_message(STATUS, lambda d: d.get("state") == "online", timeout=15)
    collector.wait_message(f"{PREFIX}/sim1/fixed42", lambda d: d.get("q") == "good", timeout=10)

    assert broker.stop() == 0
    t_restart = now_ms()
    broker.start()   # same port, no persistence: every retained message is gone
    col2 = make_collector()
    birth = col2.wait_message(STATUS, lambda d: d.get("state") == "online", timeout=35)
    assert birth["ts"] >= t_restart - 1000, birth
    d = col2.wait_message(f"{PREFIX}/sim1/fixed42",
                          lambda d: d.get("q") == "good" and d["ts"] >= t_restart, timeout=15)
    assert d["v"] == 42
    # the retained state is restored on the new broker: birth and device status
    assert fetch_retained(broker.port, STATUS, predicate=lambda d: d.get("state") == "online")
    assert fetch_retained(broker.port, f"{PREFIX}/sim1/status",
                          predicate=lambda d: d.get("state") == "up"), \
        "device status not republished (retained) after the broker came back"


# ---------------------------------------------------------------- (e) shutdown and Last Will

def test_sigterm_publishes_offline(broker, collector, make_sim, make_agent, tmp_path):
    tags = [t for t in SIM_TAGS if t["name"] in ("counter", "fixed42")]
    _, _, agent = start_sim_and_agent(tmp_path, broker, make_sim, make_agent, tags)
    collector.wait_message(STATUS, lambda d: d.get("state") == "online", timeout=15)
    collector.wait_message(f"{PREFIX}/sim1/counter", lambda d: d.get("q") == "good", timeout=10)
    mk = collector.mark()
    t0 = time.monotonic()
    rc = agent.stop(timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, f"exit code {rc}\n{agent.log_tail()}"
    assert took < 5, took
    collector.wait_message(STATUS, lambda d: d.get("state") == "offline", timeout=5, after=mk)
    m = fetch_retained(broker.port, STATUS)
    assert m is not None and m.retain, "no retained P/status after shutdown"
    assert json.loads(m.payload).get("state") == "offline", m.payload


def test_last_will_on_kill9(broker, collector, make_sim, make_agent, tmp_path):
    tags = [t for t in SIM_TAGS if t["name"] in ("counter",)]
    _, _, agent = start_sim_and_agent(tmp_path, broker, make_sim, make_agent, tags,
                                      mqtt={"keepalive": 5})
    collector.wait_message(STATUS, lambda d: d.get("state") == "online", timeout=15)
    mk = collector.mark()
    agent.kill9()
    collector.wait_message(STATUS, lambda d: d.get("state") == "offline", timeout=15, after=mk)
    m = fetch_retained(broker.port, STATUS, predicate=lambda d: d.get("state") == "offline")
    assert m is not None, "the Last Will is not retained"
