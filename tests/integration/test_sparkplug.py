"""Sparkplug B edge node (SPEC §8, issue #9), checked against Eclipse Sparkplug 3.0.

Every payload is decoded independently of mbgate: the official Eclipse Tahu
sparkplug_b.proto (src/sparkplug_b.proto) is compiled with Debian's protoc
into a temporary directory at session start and read with python3-protobuf.
A paho collector subscribed to spBv1.0/# sees everything the node publishes,
in publish order (one publisher connection, one subscription).
"""
import importlib
import json
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from conftest import (agent_status, control_socket, encode, encode_string, free_port, now_ms, run_cli,
                      tcp_device, wait_for, write_config)

ROOT = Path(__file__).resolve().parents[2]
GROUP = "plant1"
EDGE = "gw1"
NODE_TYPES = ("NBIRTH", "NDATA", "NDEATH", "NCMD")
SEQ_TYPES = ("NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH")   # all but NDEATH carry seq


# --------------------------------------------------------------------------
# independent decoder
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pb():
    """sparkplug_b_pb2 compiled from the official Tahu .proto by protoc."""
    d = tempfile.mkdtemp(prefix="spb-pb2-")
    try:
        shutil.copy(ROOT / "src" / "sparkplug_b.proto", d)
        r = subprocess.run(["protoc", f"--proto_path={d}", f"--python_out={d}", "sparkplug_b.proto"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"protoc failed: {r.stderr}"
        sys.path.insert(0, d)
        try:
            mod = importlib.import_module("sparkplug_b_pb2")
        finally:
            sys.path.remove(d)
        yield mod
    finally:
        shutil.rmtree(d, ignore_errors=True)


SpMsg = namedtuple("SpMsg", "kind device p msg")


def dt(pb, name):
    return pb.DataType.Value(name)


def parse_topic(topic):
    """(kind, device) of a node topic of ours, or None."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "spBv1.0" or parts[1] != GROUP or parts[3] != EDGE:
        return None
    if parts[2] in NODE_TYPES and len(parts) == 4:
        return parts[2], None
    if parts[2] in ("DBIRTH", "DDATA", "DDEATH", "DCMD") and len(parts) == 5:
        return parts[2], parts[4]
    return None


def decoded(pb, col, after=0, kinds=None, before=None):
    """Our node's messages from the collector (indexes after..before), decoded,
    in arrival order."""
    out = []
    msgs = col.messages(after=after)
    if before is not None:
        msgs = msgs[:max(0, before - after)]
    for m in msgs:
        k = parse_topic(m.topic)
        if not k or (kinds and k[0] not in kinds):
            continue
        p = pb.Payload()
        p.ParseFromString(m.payload)
        out.append(SpMsg(k[0], k[1], p, m))
    return out


def index_of(pb, col, kind, device=None, after=0, pred=None):
    """Collector index of the first matching message at or after after, or None."""
    msgs = col.messages(after=after)
    for i, m in enumerate(msgs):
        k = parse_topic(m.topic)
        if k and k[0] == kind and (device is None or k[1] == device):
            if pred is not None:
                p = pb.Payload()
                p.ParseFromString(m.payload)
                if not pred(p):
                    continue
            return after + i
    return None


def wait_index(pb, col, kind, device=None, after=0, pred=None, timeout=15.0):
    return wait_for(lambda: (lambda i: None if i is None else i + 1)(
                        index_of(pb, col, kind, device, after, pred)),
                    timeout, f"{kind} {device or ''} after #{after}",
                    diag=lambda: summary(pb, col, after)) - 1


def summary(pb, col, after=0, n=40):
    lines = []
    for s in decoded(pb, col, after)[-n:]:
        seq = s.p.seq if s.p.HasField("seq") else "-"
        lines.append(f"  {s.kind} {s.device or ''} seq={seq} metrics={len(s.p.metrics)}")
    return "node messages:\n" + "\n".join(lines)


def metric(p, name):
    ms = [m for m in p.metrics if m.name == name]
    assert len(ms) == 1, f"metric {name!r} appears {len(ms)} times in {p}"
    return ms[0]


def props(m):
    """{key: PropertyValue} of a metric."""
    assert len(m.properties.keys) == len(m.properties.values), m
    return dict(zip(m.properties.keys, m.properties.values))


def value(pb, m, datatype):
    """The value of metric m of Sparkplug datatype, checking the value field
    Tahu and Ignition use for it; None when is_null."""
    if m.is_null:
        assert m.WhichOneof("value") is None, f"is_null metric with a value: {m}"
        return None
    f = m.WhichOneof("value")
    D = pb.DataType
    if datatype in (D.Value("Int8"), D.Value("Int16"), D.Value("Int32")):
        assert f == "int_value", f"{m} carries {f}"
        v = m.int_value
        return v - (1 << 32) if v >= 1 << 31 else v      # sign-extended to 32 bits
    if datatype in (D.Value("UInt8"), D.Value("UInt16")):
        assert f == "int_value", f"{m} carries {f}"
        return m.int_value
    if datatype in (D.Value("UInt32"), D.Value("UInt64")):
        assert f == "long_value", f"{m} carries {f}"
        return m.long_value
    if datatype == D.Value("Int64"):
        assert f == "long_value", f"{m} carries {f}"
        v = m.long_value
        return v - (1 << 64) if v >= 1 << 63 else v
    expect = {D.Value("Float"): "float_value", D.Value("Double"): "double_value",
              D.Value("Boolean"): "boolean_value", D.Value("String"): "string_value"}[datatype]
    assert f == expect, f"{m} carries {f}, expected {expect}"
    return getattr(m, f)


def check_seq(msgs):
    """seq of every node message (all but NDEATH): NBIRTH 0, then +1 mod 256."""
    prev = None
    for i, s in enumerate(msgs):
        if s.kind not in SEQ_TYPES:
            continue
        assert s.p.HasField("seq"), f"#{i} {s.kind} {s.device} without seq"
        assert 0 <= s.p.seq <= 255, s.p.seq
        if s.kind == "NBIRTH":
            assert s.p.seq == 0, f"#{i} NBIRTH seq {s.p.seq}"
        elif prev is not None:
            assert s.p.seq == (prev + 1) % 256, \
                f"#{i} {s.kind} {s.device}: seq {s.p.seq} after {prev}"
        prev = s.p.seq


def check_qos0_unretained(msgs):
    for s in msgs:
        if s.kind in SEQ_TYPES:
            assert s.msg.qos == 0 and not s.msg.retain, \
                f"{s.kind} {s.device} qos={s.msg.qos} retain={s.msg.retain}"


def alias_map(pb, dbirth):
    """{alias: (name, datatype)} of a DBIRTH (every metric named, aliased, typed)."""
    out = {}
    for m in dbirth.metrics:
        assert m.name and m.HasField("alias") and m.HasField("datatype"), m
        assert m.HasField("timestamp"), m
        out[m.alias] = (m.name, m.datatype)
    return out


def ddata_values(pb, msgs, device, amap):
    """[(name, value, is_historical, timestamp)] of DDATA for device, in order."""
    out = []
    for s in msgs:
        if s.kind != "DDATA" or s.device != device:
            continue
        for m in s.p.metrics:
            assert not m.name and m.HasField("alias"), f"DDATA metric not by alias only: {m}"
            assert not m.HasField("datatype"), f"DDATA metric with a datatype: {m}"
            assert m.HasField("timestamp"), m
            name, d = amap[m.alias]
            out.append((name, value(pb, m, d), m.is_historical, m.timestamp))
    return out


def sp_config(tmp_path, devices, broker, sparkplug=None, mqtt=None, **kw):
    sp = {"group_id": GROUP, "edge_node_id": EDGE}
    sp.update(sparkplug or {})
    mq = {"format": "sparkplug", "sparkplug": sp}
    mq.update(mqtt or {})
    return write_config(tmp_path, devices, broker.port, mqtt=mq, **kw)


def publish(broker, topic, payload, qos=1, retain=False):
    mqtt_publish.single(topic, payload, qos=qos, retain=retain, hostname="127.0.0.1",
                        port=broker.port, client_id=f"itest-pub-{time.monotonic_ns()}")


def cmd_payload(pb, metrics):
    """A command payload: metrics = [dict(name=, alias=, datatype=, <field>=value)]."""
    p = pb.Payload()
    p.timestamp = now_ms()
    for spec in metrics:
        m = p.metrics.add()
        for k, v in spec.items():
            if k == "datatype":
                v = dt(pb, v)
            setattr(m, k, v)
    return p.SerializeToString()


def f32(x):
    return struct.unpack(">f", struct.pack(">f", x))[0]


# --------------------------------------------------------------------------
# every tag type, births, aliases, Rebirth
# --------------------------------------------------------------------------

# name, table, address, type, registers (or coil value), expected value, Sparkplug datatype, extra keys
TYPE_CASES = [
    ("run", "coil", 0, "bool", True, True, "Boolean", {}),
    ("i16", "holding", 0, "int16", encode("int16", -1234), -1234, "Int16", {}),
    ("u16", "holding", 1, "uint16", encode("uint16", 54321), 54321, "UInt16", {}),
    ("i32", "holding", 2, "int32", encode("int32", -123456789), -123456789, "Int32", {}),
    ("u32", "holding", 4, "uint32", encode("uint32", 3000000000), 3000000000, "UInt32", {}),
    ("i64", "holding", 6, "int64", encode("int64", -1234567890123), -1234567890123, "Int64", {}),
    ("u64", "holding", 10, "uint64", encode("uint64", 18000000000000000000),
     18000000000000000000, "UInt64", {}),
    ("f32", "holding", 14, "float32", encode("float32", 123.456), f32(123.456), "Float",
     {"unit": "degC"}),
    ("f64", "holding", 16, "float64", encode("float64", -2.718281828459045), -2.718281828459045,
     "Double", {}),
    ("txt", "holding", 20, "string", encode_string("hello", 8), "hello", "String", {"length": 8}),
    ("scaled", "holding", 24, "int16", [215], 21.5, "Double", {"scale": 0.1, "unit": "degC"}),
]
DEV2_CASES = [
    ("speed", "holding", 100, "uint16", [1500], 1500, "UInt16", {"unit": "rpm"}),
    ("on", "coil", 5, "bool", False, False, "Boolean", {}),
]


def plc_init(*case_lists):
    init = {}
    for cases in case_lists:
        for name, table, addr, _, data, *_ in cases:
            init.setdefault(table, {})[str(addr)] = data
    return init


def tags_of(cases, **common):
    out = []
    for name, table, addr, typ, _, _, _, extra in cases:
        t = {"name": name, "table": table, "address": addr, "type": typ}
        t.update(extra)
        t.update(common)
        out.append(t)
    return out


def check_dbirth(pb, dbirth, cases, all_values):
    """Names, datatypes, values (or is_null), timestamps, engUnit and Quality."""
    amap = alias_map(pb, dbirth.p)
    by_name = {m.name: m for m in dbirth.p.metrics}
    assert sorted(by_name) == sorted(c[0] for c in cases), sorted(by_name)
    assert dbirth.p.HasField("timestamp") and dbirth.p.HasField("seq")
    for name, _, _, _, _, expected, dtype, extra in cases:
        m = by_name[name]
        assert m.datatype == dt(pb, dtype), f"{name}: datatype {m.datatype}, expected {dtype}"
        v = value(pb, m, m.datatype)
        pr = props(m)
        assert "Quality" in pr, f"{name}: no Quality property"
        assert pr["Quality"].type == dt(pb, "Int32"), pr["Quality"]
        if all_values:
            assert v is not None, f"{name}: is_null in a DBIRTH after its values were read"
        if v is not None:
            assert type(v) is type(expected) and v == expected, f"{name}: {v!r} != {expected!r}"
            assert pr["Quality"].int_value == 192, f"{name}: Quality {pr['Quality'].int_value}"
        else:
            assert pr["Quality"].int_value == 0, f"{name}: null with Quality {pr['Quality'].int_value}"
        if "unit" in extra:
            assert pr["engUnit"].type == dt(pb, "String") and \
                pr["engUnit"].string_value == extra["unit"], f"{name}: {pr.get('engUnit')}"
        else:
            assert "engUnit" not in pr, f"{name}: unexpected engUnit"
    return amap


def test_births_datatypes_aliases_and_rebirth(pb, broker, make_collector, make_plc, make_agent,
                                              tmp_path):
    col = make_collector("spBv1.0/#")
    plc = make_plc(plc_init(TYPE_CASES, DEV2_CASES))
    devices = [tcp_device("plc1", plc.port, tags_of(TYPE_CASES)),
               tcp_device("plc2", plc.port, tags_of(DEV2_CASES), unit_id=2)]
    conf = sp_config(tmp_path, devices, broker)
    make_agent(conf).start()

    # births, then data for every tag of both devices
    wait_index(pb, col, "NBIRTH")
    d1 = wait_index(pb, col, "DBIRTH", "plc1")
    d2 = wait_index(pb, col, "DBIRTH", "plc2")
    amaps = {"plc1": alias_map(pb, msgs_at(pb, col, d1).p),
             "plc2": alias_map(pb, msgs_at(pb, col, d2).p)}

    def latest():
        ms = decoded(pb, col)
        out = {}
        for dev, cases in (("plc1", TYPE_CASES), ("plc2", DEV2_CASES)):
            for s in ms:      # values in the DBIRTH count, later DDATA override
                if s.kind == "DBIRTH" and s.device == dev:
                    for m in s.p.metrics:
                        if not m.is_null:
                            out[(dev, m.name)] = value(pb, m, m.datatype)
            for name, v, _, _ in ddata_values(pb, ms, dev, amaps[dev]):
                if v is not None:
                    out[(dev, name)] = v
        return out
    want = {("plc1", c[0]): c[5] for c in TYPE_CASES}
    want.update({("plc2", c[0]): c[5] for c in DEV2_CASES})
    wait_for(lambda: set(latest()) >= set(want), 15, "a value for every tag",
             diag=lambda: f"missing {sorted(set(want) - set(latest()))}\n" + summary(pb, col))
    got = latest()
    bad = [f"{k}: {got[k]!r} ({type(got[k]).__name__}) != {v!r}" for k, v in want.items()
           if type(got[k]) is not type(v) or got[k] != v]
    assert not bad, "\n".join(bad)

    # DDATA (by alias) carries every type too, not only the births
    def ddata_seen():
        ms = decoded(pb, col)
        return {(dev, n): v for dev in amaps for n, v, _, _ in ddata_values(pb, ms, dev, amaps[dev])}
    wait_for(lambda: set(ddata_seen()) >= set(want), 10, "DDATA for every tag",
             diag=lambda: f"missing {sorted(set(want) - set(ddata_seen()))}")
    got = ddata_seen()
    bad = [f"DDATA {k}: {got[k]!r} ({type(got[k]).__name__}) != {v!r}" for k, v in want.items()
           if type(got[k]) is not type(v) or got[k] != v]
    assert not bad, "\n".join(bad)

    wait_index(pb, col, "DDATA", "plc1", after=d1)
    wait_index(pb, col, "DDATA", "plc2", after=d2)
    msgs = decoded(pb, col)
    # topic order: NBIRTH first; each device's DBIRTH before any of its DDATA
    assert msgs[0].kind == "NBIRTH", summary(pb, col)
    for dev in ("plc1", "plc2"):
        first_birth = next(i for i, s in enumerate(msgs) if s.kind == "DBIRTH" and s.device == dev)
        first_data = next(i for i, s in enumerate(msgs) if s.kind == "DDATA" and s.device == dev)
        assert first_birth < first_data, f"{dev}: DDATA before DBIRTH"
    assert {s.kind for s in msgs} <= {"NBIRTH", "DBIRTH", "DDATA"}, {s.kind for s in msgs}

    # NBIRTH: bdSeq (Int64), Node Control/Rebirth (Boolean false, no alias), node info
    nb = msgs[0].p
    bd = metric(nb, "bdSeq")
    assert bd.datatype == dt(pb, "Int64") and bd.WhichOneof("value") == "long_value"
    bdseq = bd.long_value
    assert 0 <= bdseq <= 255
    rb = metric(nb, "Node Control/Rebirth")
    assert rb.datatype == dt(pb, "Boolean") and rb.boolean_value is False
    assert not rb.HasField("alias"), "Node Control/Rebirth must not have an alias"
    assert metric(nb, "Node Info/Version").datatype == dt(pb, "String")
    assert metric(nb, "Node Info/Buffer Depth").datatype == dt(pb, "Int64")
    assert nb.seq == 0 and nb.HasField("timestamp")
    assert all(m.HasField("timestamp") for m in nb.metrics)

    # aliases unique across the node (both devices), datatypes and properties
    a1, a2 = set(amaps["plc1"]), set(amaps["plc2"])
    assert len(a1) == len(TYPE_CASES) and len(a2) == len(DEV2_CASES)
    assert not a1 & a2, f"aliases shared between devices: {a1 & a2}"
    for s in msgs:
        if s.kind == "DBIRTH":
            check_dbirth(pb, s, TYPE_CASES if s.device == "plc1" else DEV2_CASES, False)
    check_seq(msgs)
    check_qos0_unretained(msgs)

    # Rebirth: NBIRTH (same bdSeq, seq 0) and every DBIRTH, nothing in between
    before = col.mark()
    publish(broker, f"spBv1.0/{GROUP}/NCMD/{EDGE}",
            cmd_payload(pb, [{"name": "Node Control/Rebirth", "datatype": "Boolean",
                              "boolean_value": True}]))
    ncmd = wait_index(pb, col, "NCMD", after=before)
    nbi = wait_index(pb, col, "NBIRTH", after=before)
    wait_for(lambda: len(decoded(pb, col, nbi)) >= 4, 10, "births after the Rebirth")
    after_cmd = decoded(pb, col, ncmd + 1)
    i_nb = next(i for i, s in enumerate(after_cmd) if s.kind == "NBIRTH")
    # what arrives between the command and the NBIRTH was published before the
    # command reached the node: it continues the old sequence
    last_seq = decoded(pb, col, 0, SEQ_TYPES, before=ncmd)[-1].p.seq
    for s in after_cmd[:i_nb]:
        assert s.kind == "DDATA", f"{s.kind} between NCMD and NBIRTH"
        assert s.p.seq == (last_seq + 1) % 256, "data published after the Rebirth command"
        last_seq = s.p.seq
    births_ = after_cmd[i_nb:i_nb + 3]
    assert [s.kind for s in births_] == ["NBIRTH", "DBIRTH", "DBIRTH"], \
        [(s.kind, s.device) for s in births_]
    assert {s.device for s in births_[1:]} == {"plc1", "plc2"}
    assert [s.p.seq for s in births_] == [0, 1, 2]
    assert metric(births_[0].p, "bdSeq").long_value == bdseq, "Rebirth changed bdSeq"
    # the births carry every current value, Quality good, the same aliases
    for s in births_[1:]:
        amap = check_dbirth(pb, s, TYPE_CASES if s.device == "plc1" else DEV2_CASES, True)
        assert amap == amaps[s.device], "aliases changed on Rebirth"
    # data goes on after the births, by the same aliases
    wait_for(lambda: any(s.kind == "DDATA" for s in decoded(pb, col, nbi)), 10, "DDATA after Rebirth")
    tail = decoded(pb, col, nbi)
    check_seq(tail)
    check_qos0_unretained(tail)
    for dev in ("plc1", "plc2"):
        ddata_values(pb, tail, dev, amaps[dev])


def msgs_at(pb, col, idx):
    m = col.messages(after=idx)[0]
    k = parse_topic(m.topic)
    p = pb.Payload()
    p.ParseFromString(m.payload)
    return SpMsg(k[0], k[1], p, m)


# --------------------------------------------------------------------------
# bdSeq across restarts, the Will, seq wrap
# --------------------------------------------------------------------------

def counter_tags(n):
    return [{"name": f"c{i:02d}", "table": "holding", "address": i, "type": "uint16",
             "sim": "counter"} for i in range(n)]


def test_bdseq_restarts_will_and_seq_wrap(pb, broker, make_collector, make_sim, make_agent,
                                          tmp_path):
    col = make_collector("spBv1.0/#")
    port = free_port()
    conf = sp_config(tmp_path, [tcp_device("sim1", port, counter_tags(20), poll_ms=50)], broker,
                     mqtt={"keepalive": 5})
    make_sim(conf, port).start()
    agent = make_agent(conf)

    def bdseq_of(p):
        m = metric(p, "bdSeq")
        assert m.datatype == dt(pb, "Int64")
        return m.long_value

    def ndeath_after(mark, timeout):
        i = wait_index(pb, col, "NDEATH", after=mark, timeout=timeout)
        s = msgs_at(pb, col, i)
        assert not s.p.HasField("seq"), "NDEATH must not carry a seq"
        assert [m.name for m in s.p.metrics] == ["bdSeq"], s.p
        assert s.msg.qos == 1 and not s.msg.retain, (s.msg.qos, s.msg.retain)
        return bdseq_of(s.p)

    seen = []
    for run in range(3):
        mark = col.mark()
        agent.start()
        nb = wait_index(pb, col, "NBIRTH", after=mark)
        seen.append(bdseq_of(msgs_at(pb, col, nb).p))
        if run == 0:
            # enough data to see seq wrap 255 -> 0 (20 tags every 50 ms)
            wait_for(lambda: len(decoded(pb, col, nb, ("DDATA",))) >= 300, 20,
                     "300 DDATA messages", diag=lambda: summary(pb, col, nb))
            msgs = decoded(pb, col, nb)
            check_seq(msgs)
            check_qos0_unretained(msgs)
            pairs = [(a.p.seq, b.p.seq) for a, b in zip(msgs, msgs[1:])]
            assert (255, 0) in pairs, "no seq wrap from 255 to 0"
        else:
            wait_index(pb, col, "DDATA", after=nb)
        if run < 2:
            # clean shutdown: NDEATH with this session's bdSeq before the disconnect
            mark = col.mark()
            assert agent.stop() == 0
            assert ndeath_after(mark, 5) == seen[-1]
    assert seen[1] == (seen[0] + 1) % 256 and seen[2] == (seen[0] + 2) % 256, seen

    # kill -9: the broker publishes the Will (keepalive 5 s -> at most 7.5 s)
    mark = col.mark()
    agent.kill9()
    assert ndeath_after(mark, 15) == seen[2], "the Will's bdSeq is not the last NBIRTH's"
    assert len(decoded(pb, col, mark, ("NDEATH",))) == 1
    check_seq(decoded(pb, col))
    # bdSeq is kept in the state directory (outbox.db counters)
    db = sqlite3.connect(f"file:{tmp_path / 'state' / 'outbox.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM counters WHERE key = 'bdseq'").fetchone()
    finally:
        db.close()
    assert row and row[0] == seen[2], row


# --------------------------------------------------------------------------
# DDEATH / DBIRTH as the PLC goes and comes back
# --------------------------------------------------------------------------

LOSS_CASES = [
    ("a", "holding", 0, "uint16", [7], 7, "UInt16", {"unit": "bar"}),
    ("b", "holding", 1, "int16", encode("int16", -3), -3, "Int16", {"deadband": 0}),
    ("c", "holding", 2, "float32", encode("float32", 1.5), 1.5, "Float", {}),
]


def test_ddeath_and_dbirth_on_plc_loss(pb, broker, make_collector, make_plc, make_agent, tmp_path):
    col = make_collector("spBv1.0/#")
    plc = make_plc(plc_init(LOSS_CASES))
    conf = sp_config(tmp_path, [tcp_device("plc1", plc.port, tags_of(LOSS_CASES), timeout_ms=300,
                                           retries=0)], broker)
    make_agent(conf).start()
    d1 = wait_index(pb, col, "DBIRTH", "plc1")
    amap = alias_map(pb, msgs_at(pb, col, d1).p)
    wait_index(pb, col, "DDATA", "plc1", after=d1)

    mark = col.mark()
    plc.kill()
    dd = wait_index(pb, col, "DDEATH", "plc1", after=mark)
    death = msgs_at(pb, col, dd)
    assert death.p.HasField("seq") and death.p.HasField("timestamp")
    time.sleep(1.0)
    plc.start()
    db = wait_index(pb, col, "DBIRTH", "plc1", after=dd, timeout=40)
    wait_index(pb, col, "DDATA", "plc1", after=db)
    between = decoded(pb, col, dd + 1)
    between = between[:next(i for i, s in enumerate(between) if s.kind == "DBIRTH")]
    assert not [s for s in between if s.kind == "DDATA"], "DDATA between DDEATH and DBIRTH"
    birth = msgs_at(pb, col, db)
    assert alias_map(pb, birth.p) == amap, "aliases changed"
    # the DBIRTH waits for the device's first values: all there, Quality good
    check_dbirth(pb, birth, LOSS_CASES, True)
    msgs = decoded(pb, col)
    check_seq(msgs)
    check_qos0_unretained(msgs)
    assert [s.kind for s in msgs].count("DDEATH") == 1


# --------------------------------------------------------------------------
# DCMD writes through the setpoint validator (SPEC §5)
# --------------------------------------------------------------------------

DCMD_CASES = [
    ("sp", "holding", 10, "uint16", [0], 0, "UInt16",
     {"writable": True, "min": 0.0, "max": 100.0, "deadband": 0}),
    ("temp", "holding", 11, "int16", [200], 20.0, "Double",
     {"writable": True, "scale": 0.1, "min": -50.0, "max": 150.0, "unit": "degC", "deadband": 0}),
    ("flag", "coil", 3, "bool", False, False, "Boolean", {"writable": True, "deadband": 0}),
]


def test_dcmd_writes_and_refusal(pb, broker, make_collector, make_plc, make_agent, mbgate_bin,
                                 tmp_path):
    col = make_collector("spBv1.0/#")
    plc = make_plc(plc_init(DCMD_CASES))
    conf = sp_config(tmp_path, [tcp_device("plc1", plc.port, tags_of(DCMD_CASES))], broker)
    agent = make_agent(conf).start()
    d1 = wait_index(pb, col, "DBIRTH", "plc1")
    amap = alias_map(pb, msgs_at(pb, col, d1).p)
    alias = {name: a for a, (name, _) in amap.items()}
    topic = f"spBv1.0/{GROUP}/DCMD/{EDGE}/plc1"

    def ddata_shows(name, v, after):
        return wait_for(lambda: any(n == name and x == v for n, x, _, _ in
                                    ddata_values(pb, decoded(pb, col, after), "plc1", amap)),
                        10, f"DDATA {name} = {v}", diag=lambda: summary(pb, col, after))

    # by name, with a datatype
    mark = col.mark()
    publish(broker, topic, cmd_payload(pb, [{"name": "sp", "datatype": "UInt16", "int_value": 42}]))
    wait_for(lambda: plc.get("holding", 10) == [42], 10, "PLC holding 10 = 42")
    ddata_shows("sp", 42, mark)

    # by alias only (no name, no datatype, as Sparkplug recommends): scaled and bool
    mark = col.mark()
    publish(broker, topic, cmd_payload(pb, [{"alias": alias["temp"], "double_value": 22.5}]))
    wait_for(lambda: plc.get("holding", 11) == [225], 10, "PLC holding 11 = 225 (22.5 / 0.1)")
    ddata_shows("temp", 22.5, mark)
    time.sleep(0.2)
    mark = col.mark()
    publish(broker, topic, cmd_payload(pb, [{"alias": alias["sp"], "int_value": 43}]))
    wait_for(lambda: plc.get("holding", 10) == [43], 10, "PLC holding 10 = 43")
    ddata_shows("sp", 43, mark)
    mark = col.mark()
    publish(broker, topic, cmd_payload(pb, [{"alias": alias["flag"], "boolean_value": True}]))
    wait_for(lambda: plc.get("coil", 3) == [True], 10, "PLC coil 3 = true")
    ddata_shows("flag", True, mark)

    # out of range: refused, audited, counted, never written
    writes = plc.stats()["writes"]
    publish(broker, topic, cmd_payload(pb, [{"name": "sp", "datatype": "UInt16", "int_value": 500}]))
    agent.wait_log(r"setpoint plc1/sp = 500 .*rejected: ")
    # an unknown metric is refused too
    publish(broker, topic, cmd_payload(pb, [{"alias": 9999, "int_value": 1}]))
    agent.wait_log(r"setpoint plc1/\? = 1 .*rejected: ")
    time.sleep(0.5)
    assert plc.get("holding", 10) == [43]
    assert plc.stats()["writes"] == writes, "a refused DCMD reached the PLC"
    r = run_cli(mbgate_bin, "status", "--json", "--socket", control_socket(conf))
    st = json.loads(r.stdout)
    assert st["setpoints"]["rejected"] == 2 and st["setpoints"]["ok"] == 4, st["setpoints"]
    msgs = decoded(pb, col)
    check_seq(msgs)


# --------------------------------------------------------------------------
# primary host STATE: births only while it is online, held data as historical
# --------------------------------------------------------------------------

HOST_CASES = [
    ("v", "holding", 0, "uint16", [0], 0, "UInt16", {"deadband": 0}),
    ("w", "holding", 1, "uint16", [9], 9, "UInt16", {"deadband": 0}),
]


def state(online, ts):
    return json.dumps({"online": online, "timestamp": ts})


def test_primary_host_state_holds_data_and_replays_historical(pb, broker, make_collector, make_plc,
                                                              make_agent, tmp_path, mbgate_bin):
    col = make_collector("spBv1.0/#")
    host_topic = "spBv1.0/STATE/scada"
    t1 = now_ms() - 60000
    publish(broker, host_topic, state(False, t1), retain=True)
    plc = make_plc(plc_init(HOST_CASES))
    conf = sp_config(tmp_path, [tcp_device("plc1", plc.port, tags_of(HOST_CASES))], broker,
                     sparkplug={"primary_host_id": "scada"})
    agent = make_agent(conf).start()
    agent.wait_log(r"waiting for primary host scada")
    # the device is read while the host is offline: nothing is published, data is held
    time.sleep(0.6)
    for v in (1, 2, 3):
        plc.set("holding", 0, v)
        time.sleep(0.35)
    assert decoded(pb, col, 0, SEQ_TYPES) == [], "published while the primary host is offline"
    health = agent_status(mbgate_bin, conf)["health"]
    assert health["code"] == 1 and "primary host offline: data held" in health["reasons"], health

    # online: NBIRTH, DBIRTH, then the held samples as historical
    mark = col.mark()
    t2 = now_ms()
    publish(broker, host_topic, state(True, t2), retain=True)
    nb = wait_index(pb, col, "NBIRTH", after=mark)
    bdseq = metric(msgs_at(pb, col, nb).p, "bdSeq").long_value
    db = wait_index(pb, col, "DBIRTH", "plc1", after=nb)
    msgs = decoded(pb, col, nb)
    assert [s.kind for s in msgs[:2]] == ["NBIRTH", "DBIRTH"], summary(pb, col, nb)
    amap = alias_map(pb, msgs_at(pb, col, db).p)
    birth_vals = {m.name: value(pb, m, m.datatype) for m in msgs_at(pb, col, db).p.metrics}
    assert birth_vals == {"v": 3, "w": 9}, birth_vals
    assert agent_status(mbgate_bin, conf)["health"]["reasons"] == []

    def hist_v():
        return [x for n, x, h, _ in ddata_values(pb, decoded(pb, col, nb), "plc1", amap)
                if n == "v" and h]
    wait_for(lambda: hist_v()[-3:] == [1, 2, 3], 10, "held v samples 1, 2, 3 as historical",
             diag=lambda: f"historical v: {hist_v()}\n" + summary(pb, col, nb))
    held = ddata_values(pb, decoded(pb, col, nb), "plc1", amap)
    assert all(h for n, x, h, _ in held if n == "v" and x in (0, 1, 2)), held

    # a stale offline STATE (older than the online one) is ignored
    publish(broker, host_topic, state(False, t2 - 1))
    agent.wait_log(r"ignoring a stale STATE")
    mark = col.mark()
    plc.set("holding", 0, 4)
    wait_for(lambda: any(n == "v" and x == 4 and not h for n, x, h, _ in
                         ddata_values(pb, decoded(pb, col, mark), "plc1", amap)),
             10, "live DDATA v = 4")
    assert not decoded(pb, col, nb, ("NDEATH",)), "NDEATH on a stale offline STATE"

    # the host goes offline for real (its Will: the timestamp of its birth):
    # NDEATH, data held; back online: births again (same bdSeq), then history
    mark = col.mark()
    publish(broker, host_topic, state(False, t2), retain=True)
    i = wait_index(pb, col, "NDEATH", after=mark)
    assert metric(msgs_at(pb, col, i).p, "bdSeq").long_value == bdseq
    plc.set("holding", 0, 5)
    time.sleep(0.8)
    assert not decoded(pb, col, i + 1, SEQ_TYPES), "published after NDEATH with the host offline"
    mark = col.mark()
    publish(broker, host_topic, state(True, now_ms()), retain=True)
    nb2 = wait_index(pb, col, "NBIRTH", after=mark)
    assert metric(msgs_at(pb, col, nb2).p, "bdSeq").long_value == bdseq
    wait_for(lambda: any(n == "v" and x == 5 and h for n, x, h, _ in
                         ddata_values(pb, decoded(pb, col, nb2), "plc1", amap)),
             10, "held v = 5 as historical")
    msgs = decoded(pb, col)
    check_seq(msgs)
    check_qos0_unretained(msgs)


# --------------------------------------------------------------------------
# reload (SIGHUP): new aliases, so a rebirth
# --------------------------------------------------------------------------

def test_reload_rebirths_with_new_aliases(pb, broker, make_collector, make_plc, make_agent,
                                          tmp_path):
    col = make_collector("spBv1.0/#")
    plc = make_plc(plc_init(LOSS_CASES))

    def dev(cases):
        return [tcp_device("plc1", plc.port, tags_of(cases))]
    conf = sp_config(tmp_path, dev(LOSS_CASES[:1]), broker)
    agent = make_agent(conf).start()
    nb = wait_index(pb, col, "NBIRTH")
    bdseq = metric(msgs_at(pb, col, nb).p, "bdSeq").long_value
    d1 = wait_index(pb, col, "DBIRTH", "plc1")
    assert [m.name for m in msgs_at(pb, col, d1).p.metrics] == ["a"]
    wait_index(pb, col, "DDATA", "plc1", after=d1)

    # twice: the second reload frees a configuration that was itself reloaded
    for cases in (LOSS_CASES, LOSS_CASES[:2]):
        mark = col.mark()
        sp_config(tmp_path, dev(cases), broker)
        agent.signal(signal.SIGHUP)
        nb2 = wait_index(pb, col, "NBIRTH", after=mark)
        assert metric(msgs_at(pb, col, nb2).p, "bdSeq").long_value == bdseq
        d2 = wait_index(pb, col, "DBIRTH", "plc1", after=nb2)
        birth = msgs_at(pb, col, d2)
        amap = check_dbirth(pb, birth, cases, False)
        wait_index(pb, col, "DDATA", "plc1", after=d2)
        # nothing for plc1 between the NBIRTH and its new DBIRTH
        assert not [s for s in decoded(pb, col, nb2 + 1, before=d2) if s.device == "plc1"]
        ddata_values(pb, decoded(pb, col, d2), "plc1", amap)
    msgs = decoded(pb, col)
    check_seq(msgs)
    check_qos0_unretained(msgs)
