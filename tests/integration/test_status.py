"""ISSUE #5: `mbgate status` / `read` / `write` / `probe` and the control socket.

SPEC.md §2 (the technician commands), §7 (status: content, exit codes
0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN, control socket mode 0660), §4
(P/status republished with counters). P = "mbgate/itest".

Every check looks at what a technician or a monitoring script gets to see
(the text, the JSON, stderr), not only at exit codes.
"""
import json
import os
import re
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (SLOW, PREFIX, assert_clean_stderr, encode, fetch_retained, free_port, run_cli,
                      tcp_device, wait_for, write_config)

HERE = Path(__file__).resolve().parent
SCHEMA = json.loads((HERE / "status.schema.json").read_text())
STATUS_TOPIC = f"{PREFIX}/status"


# --------------------------------------------------------------------------
# JSON Schema (draft-07 subset used by status.schema.json)
# --------------------------------------------------------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}
_SUPPORTED = {"$schema", "$ref", "title", "description", "definitions", "type",
              "properties", "required", "additionalProperties", "items", "enum",
              "minimum", "minLength", "pattern"}


def _resolve(root, ref):
    assert ref.startswith("#/"), f"unsupported $ref {ref}"
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def schema_errors(inst, schema, root=None, path="$"):
    """Every violation of schema by inst, as "path: what" strings. Supports
    type, properties, required, additionalProperties, items, enum, $ref,
    minimum, minLength, pattern (all status.schema.json uses); an unknown
    keyword fails loudly rather than being ignored."""
    root = root if root is not None else schema
    unknown = set(schema) - _SUPPORTED
    assert not unknown, f"validator does not implement {unknown} (at {path})"
    if "$ref" in schema:
        return schema_errors(inst, _resolve(root, schema["$ref"]), root, path)
    errs = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](inst) for x in types):
            return [f"{path}: {inst!r} is not of type {t}"]
    if "enum" in schema and not any(inst == e and type(inst) is type(e) or
                                    (_TYPES["number"](inst) and _TYPES["number"](e) and inst == e)
                                    for e in schema["enum"]):
        errs.append(f"{path}: {inst!r} not in {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](inst) and inst < schema["minimum"]:
        errs.append(f"{path}: {inst!r} < minimum {schema['minimum']}")
    if isinstance(inst, str):
        if "minLength" in schema and len(inst) < schema["minLength"]:
            errs.append(f"{path}: {inst!r} shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], inst):
            errs.append(f"{path}: {inst!r} does not match /{schema['pattern']}/")
    if isinstance(inst, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in inst:
                errs.append(f"{path}: missing required key {k!r}")
        for k, v in inst.items():
            if k in props:
                errs.extend(schema_errors(v, props[k], root, f"{path}.{k}"))
            else:
                ap = schema.get("additionalProperties", True)
                if ap is False:
                    errs.append(f"{path}: unexpected key {k!r}")
                elif isinstance(ap, dict):
                    errs.extend(schema_errors(v, ap, root, f"{path}.{k}"))
    if isinstance(inst, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(inst):
            errs.extend(schema_errors(v, schema["items"], root, f"{path}[{i}]"))
    return errs


def assert_schema_valid(doc):
    errs = schema_errors(doc, SCHEMA)
    assert not errs, "status JSON violates status.schema.json:\n  " + "\n  ".join(errs) \
        + "\n" + json.dumps(doc, indent=1)[:4000]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def counter_tags(n):
    tags = [{"name": f"c{i:03d}", "table": "holding", "address": i, "type": "uint16",
             "sim": "counter"} for i in range(n)]
    return tags


COUNTER = [{"name": "c", "table": "holding", "address": 0, "type": "uint16", "sim": "counter"}]


def status(mbgate_bin, conf, *args, env=None):
    return run_cli(mbgate_bin, "status", "-c", conf, *args, timeout=15, env=env)


def status_json(mbgate_bin, conf):
    """(exit code, decoded JSON or None, CompletedProcess)."""
    r = status(mbgate_bin, conf, "--json")
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = None
    return r.returncode, doc, r


def wait_status(mbgate_bin, conf, pred, timeout=10.0, desc="status", procs=None):
    """Poll `mbgate status --json` until pred(doc) holds; return (rc, doc)."""
    last = {}

    def probe():
        rc, doc, r = status_json(mbgate_bin, conf)
        last["v"] = (rc, doc, r.stderr)
        return (rc, doc) if doc is not None and pred(doc) else None

    def diag():
        s = f"last status: {last.get('v')!r}"[:3000]
        return s + ("\n" + procs.diag() if procs else "")
    return wait_for(probe, timeout, desc, interval=0.1, diag=diag)


def field(text, name):
    """The value of a 'Label           : value' line of the status text."""
    m = re.search(rf"^{re.escape(name)}\s*: (.*)$", text, re.M)
    assert m, f"no {name!r} line in status output:\n{text}"
    return m.group(1)


def device_rows(text):
    """The device table as {name: {column header: cell}}; columns are found
    from the header line's positions (cells may contain spaces)."""
    lines = text.splitlines()
    hi = next((i for i, l in enumerate(lines) if l.startswith("Device ")), None)
    assert hi is not None, f"no device table in status output:\n{text}"
    header = lines[hi]
    names = ["Device", "State", "Last good", "Period", "p50", "p99", "Errors", "Last error"]
    starts = []
    for n in names:
        pos = header.find(n, starts[-1] + 1 if starts else 0)
        assert pos >= 0, f"column {n!r} missing from the header {header!r}"
        starts.append(pos)
    rows = {}
    for line in lines[hi + 1:]:
        if not line.strip():
            break
        cells = {}
        for k, n in enumerate(names):
            end = starts[k + 1] if k + 1 < len(names) else None
            cells[n] = line[starts[k]:end].strip()
        rows[cells["Device"]] = cells
    return rows


def start_rig(tmp_path, broker, make_sim, make_agent, tags=COUNTER, ndev=1, broker_port=None,
              dev_kw=None, **overrides):
    """ndev `mbgate sim` PLCs (plc1..plcN) serving tags, and an agent polling them."""
    ports = [free_port() for _ in range(ndev)]
    devs = [tcp_device(f"plc{i + 1}", p, tags, timeout_ms=300, retries=0, **(dev_kw or {}))
            for i, p in enumerate(ports)]
    conf = write_config(tmp_path, devs, broker_port or broker.port, **overrides)
    sims = [make_sim(conf, port=p, name=f"sim{i + 1}").start() for i, p in enumerate(ports)]
    agent = make_agent(conf).start()
    return conf, sims, agent


def all_up(doc):
    return (doc["broker"]["connected"] and doc["devices"]
            and all(d["state"] == "up" and d["polls"] > 0 for d in doc["devices"]))


def sock_path(conf):
    m = re.search(r'socket = "([^"]+)"', Path(conf).read_text())
    return m.group(1)


def connect_retrying(s, path, timeout=5.0):
    """Connect like `mbgate status` does: a full listen backlog (EAGAIN on a
    non-blocking Unix socket) is retried until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return s.connect(path)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def one_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one clear line on stderr, got:\n{stderr}"
    return lines[0]


# --------------------------------------------------------------------------
# the validator itself (so a broken validator cannot pass everything)
# --------------------------------------------------------------------------

def test_schema_validator_rejects_bad_documents():
    good = {"version": "1", "gateway": "g", "uptime_s": 0,
            "health": {"code": 0, "status": "OK", "reasons": []},
            "broker": {"connected": True, "address": "a", "since_ts": 0, "reconnects": 0,
                       "published": 0, "acked": 0, "inflight": 0, "last_error": "",
                       "last_error_ts": 0},
            "outbox": {"pending": 0, "oldest_ts": 0, "file_bytes": 0, "dropped": 0,
                       "dropping": False, "disk_full": False, "growing": False},
            "devices": [{"name": "plc1", "state": "up", "last_good_ts": 1, "poll_ms": 100,
                         "latency_p50_ms": 1.5, "latency_p99_ms": 2, "polls": 1, "errors": 0,
                         "skipped": 0, "last_error": "", "last_error_ts": 0}],
            "setpoints": {"ok": 0, "rejected": 0, "last": "", "last_ts": 0}}
    assert schema_errors(good, SCHEMA) == []
    bad = json.loads(json.dumps(good))
    del bad["outbox"]["dropped"]
    bad["health"]["code"] = 3
    bad["devices"][0]["state"] = "sleeping"
    bad["devices"][0]["polls"] = -1
    bad["devices"][0]["name"] = "a b"
    bad["broker"]["connected"] = 1
    bad["extra"] = 1
    bad["uptime_s"] = True
    errs = "\n".join(schema_errors(bad, SCHEMA))
    for needle in ("'dropped'", "$.health.code", "$.devices[0].state", "$.devices[0].polls",
                   "$.devices[0].name", "$.broker.connected", "'extra'", "$.uptime_s"):
        assert needle in errs, f"{needle} not reported:\n{errs}"


# --------------------------------------------------------------------------
# status in each state
# --------------------------------------------------------------------------

def test_status_ok(tmp_path, broker, make_sim, make_agent, make_collector, mbgate_bin, procs):
    col = make_collector(f"{PREFIX}/#")
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent)
    col.wait_message(f"{PREFIX}/plc1/c", timeout=10)
    rc, doc = wait_status(mbgate_bin, conf, lambda d: all_up(d) and d["broker"]["published"] > 0
                          and d["broker"]["acked"] > 0, desc="an OK status", procs=procs)
    assert rc == 0, doc
    assert_schema_valid(doc)
    assert doc["health"] == {"code": 0, "status": "OK", "reasons": []}
    assert doc["gateway"] == "itest"
    assert doc["broker"]["address"].endswith(str(broker.port)), doc["broker"]
    assert doc["broker"]["since_ts"] > 0
    dev = doc["devices"][0]
    assert dev["name"] == "plc1" and dev["state"] == "up" and dev["poll_ms"] == 100
    assert dev["last_good_ts"] > 0 and dev["errors"] == 0 and dev["last_error"] == ""
    assert 0 <= dev["latency_p50_ms"] <= dev["latency_p99_ms"] < 1000, dev
    assert doc["outbox"]["dropped"] == 0 and not doc["outbox"]["dropping"]

    r = status(mbgate_bin, conf)
    assert r.returncode == 0, r
    text = r.stdout
    assert_clean_stderr(r.stderr)
    assert r.stderr == ""
    assert re.match(r"mbgate \S+, gateway itest, up \d+ s", text), text
    assert field(text, "Health") == "OK", text
    assert re.match(rf"connected to \S*{broker.port} since .* ago, 0 reconnects$",
                    field(text, "Broker")), text
    m = re.match(r"(\d+) published, (\d+) acknowledged, (\d+) in flight$", field(text, "Messages"))
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, text
    assert re.search(r"0 dropped", field(text, "Outbox")), text
    assert "DROPPING" not in text
    assert field(text, "Setpoints").startswith("0 ok, 0 rejected"), text
    row = device_rows(text)["plc1"]
    assert row["State"] == "up", text
    assert row["Period"] == "100 ms", text
    assert re.fullmatch(r"\d+(\.\d)? ms", row["p50"]), f"p50 latency figure: {row}"
    assert re.fullmatch(r"\d+(\.\d)? ms", row["p99"]), f"p99 latency figure: {row}"
    assert re.fullmatch(r"[\d.]+ (s|ms) ago", row["Last good"]), row
    assert row["Errors"] == "0" and row["Last error"] == "", row
    assert agent.running()


def test_status_device_down_warning(tmp_path, broker, make_sim, make_agent, mbgate_bin, procs):
    conf, sims, agent = start_rig(tmp_path, broker, make_sim, make_agent, ndev=2)
    wait_status(mbgate_bin, conf, all_up, desc="both devices up", procs=procs)
    t_down = time.time()
    sims[1].stop()
    rc, doc = wait_status(mbgate_bin, conf,
                          lambda d: d["devices"][1]["state"] == "down" and d["devices"][1]["last_error"],
                          desc="plc2 down", procs=procs)
    assert rc == 1, doc
    assert_schema_valid(doc)
    assert doc["health"]["code"] == 1 and doc["health"]["status"] == "WARNING", doc["health"]
    assert "plc2 down" in doc["health"]["reasons"], doc["health"]
    d1, d2 = doc["devices"]
    assert d1["name"] == "plc1" and d1["state"] == "up"
    assert d2["name"] == "plc2" and d2["errors"] >= 1
    assert d2["last_error_ts"] >= int(t_down * 1000) - 1000, d2
    assert d2["last_error_ts"] <= int(time.time() * 1000) + 1000, d2

    r = status(mbgate_bin, conf)
    assert r.returncode == 1, r
    text = r.stdout
    assert re.match(r"WARNING \(.*plc2 down.*\)$", field(text, "Health")), text
    rows = device_rows(text)
    assert rows["plc1"]["State"] == "up", text
    row = rows["plc2"]
    assert row["State"] == "down", text
    assert int(row["Errors"]) >= 1, row
    # the last error, with when it happened
    err = d2["last_error"]
    assert row["Last error"].startswith(err[:40]), f"{row} vs JSON {err!r}"
    assert re.search(r"\([\d.]+ (s|ms) ago\)$", row["Last error"]), row
    assert agent.running()


def test_status_every_device_down_critical(tmp_path, broker, make_sim, make_agent, mbgate_bin,
                                          procs):
    conf, sims, agent = start_rig(tmp_path, broker, make_sim, make_agent, ndev=2)
    wait_status(mbgate_bin, conf, all_up, desc="both devices up", procs=procs)
    for s in sims:
        s.stop()
    rc, doc = wait_status(mbgate_bin, conf,
                          lambda d: all(x["state"] == "down" for x in d["devices"]),
                          desc="both devices down", procs=procs)
    assert rc == 2, doc
    assert_schema_valid(doc)
    assert doc["health"]["status"] == "CRITICAL" and doc["health"]["code"] == 2
    assert "every device down" in doc["health"]["reasons"], doc["health"]
    r = status(mbgate_bin, conf)
    assert r.returncode == 2, r
    assert re.match(r"CRITICAL \(.*every device down", field(r.stdout, "Health")), r.stdout
    rows = device_rows(r.stdout)
    assert rows["plc1"]["State"] == "down" and rows["plc2"]["State"] == "down", r.stdout
    assert agent.running()


def test_status_broker_down_backlog_growing(tmp_path, broker, make_sim, make_agent, mbgate_bin,
                                           procs):
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent)
    wait_status(mbgate_bin, conf, all_up, desc="connected, device up", procs=procs)
    broker.stop()
    rc, doc = wait_status(mbgate_bin, conf,
                          lambda d: not d["broker"]["connected"] and d["outbox"]["pending"] > 0,
                          desc="broker disconnected with samples pending", procs=procs)
    assert rc == 1, doc
    assert_schema_valid(doc)
    assert doc["health"]["status"] == "WARNING"
    assert "broker disconnected" in doc["health"]["reasons"], doc["health"]
    p1 = doc["outbox"]["pending"]
    # the backlog grows (10 samples/s) and status says so
    rc, doc2 = wait_status(mbgate_bin, conf,
                           lambda d: d["outbox"]["pending"] >= p1 + 5 and d["outbox"]["growing"],
                           timeout=6, desc="pending to grow and growing=true", procs=procs)
    assert rc == 1
    assert "backlog growing" in doc2["health"]["reasons"], doc2["health"]
    assert doc2["outbox"]["oldest_ts"] > 0 and doc2["outbox"]["dropped"] == 0

    r = status(mbgate_bin, conf)
    assert r.returncode == 1, r
    text = r.stdout
    health = field(text, "Health")
    assert health.startswith("WARNING ("), text
    assert "backlog growing" in health or "broker disconnected" in health, text
    assert field(text, "Broker").startswith("disconnected from"), text
    m = re.match(r"(\d+) samples? pending \(oldest [\d.]+ (s|min) ago\)", field(text, "Outbox"))
    assert m, text
    assert int(m.group(1)) >= doc2["outbox"]["pending"], f"pending must keep growing:\n{text}"
    assert device_rows(text)["plc1"]["State"] == "up"
    assert agent.running()


def test_status_outbox_dropping_critical(tmp_path, make_sim, make_agent, mbgate_bin, procs):
    # The broker is down for the whole test: nothing listens on its port.
    dead = free_port()
    conf, _, agent = start_rig(tmp_path, None, make_sim, make_agent, tags=counter_tags(200),
                               broker_port=dead, dev_kw={"poll_ms": 50},
                               buffer={"max_mb": 1})
    agent.wait_log(r"dropping oldest samples", timeout=25)
    rc, doc = wait_status(mbgate_bin, conf, lambda d: d["outbox"]["dropped"] > 0,
                          desc="dropped > 0", procs=procs)
    assert rc == 2, doc
    assert_schema_valid(doc)
    assert doc["outbox"]["dropping"] is True, doc["outbox"]
    assert doc["health"]["status"] == "CRITICAL" and doc["health"]["code"] == 2
    assert "outbox dropping samples" in doc["health"]["reasons"], doc["health"]
    assert "broker disconnected" in doc["health"]["reasons"], doc["health"]
    r = status(mbgate_bin, conf)
    assert r.returncode == 2, r
    text = r.stdout
    assert field(text, "Health").startswith("CRITICAL ("), text
    assert "outbox dropping samples" in field(text, "Health"), text
    m = re.search(r", (\d+) dropped, DROPPING samples", field(text, "Outbox"))
    assert m and int(m.group(1)) > 0, text
    assert agent.running()


def test_status_agent_not_running(tmp_path, mbgate_bin):
    conf = write_config(tmp_path, [tcp_device("plc1", free_port(), COUNTER)], free_port())
    sock = sock_path(conf)
    assert not os.path.exists(sock)
    r = status(mbgate_bin, conf)
    assert r.returncode == 3, r
    assert_clean_stderr(r.stderr)
    line = one_line(r.stderr)
    assert sock in line and "no such socket" in line, line
    assert "UNKNOWN" in r.stdout and sock in r.stdout, r.stdout
    # --json: exit 3, nothing on stdout a JSON consumer could mistake, the reason on stderr
    r = status(mbgate_bin, conf, "--json")
    assert r.returncode == 3 and r.stdout.strip() == "", r
    assert sock in one_line(r.stderr)
    # --socket overrides the config
    other = str(tmp_path / "other.sock")
    r = run_cli(mbgate_bin, "status", "--socket", other)
    assert r.returncode == 3 and other in one_line(r.stderr), r
    # a socket file nobody listens on (left behind by a dead agent)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.close()
    r = status(mbgate_bin, conf)
    assert r.returncode == 3, r
    line = one_line(r.stderr)
    assert sock in line and "nobody listening" in line, line


# --------------------------------------------------------------------------
# read / write / probe against an independent PLC (pymodbus)
# --------------------------------------------------------------------------

PLC_TAGS = [
    {"name": "temp", "table": "holding", "address": 100, "type": "float32", "byte_order": "CDAB"},
    {"name": "sp", "table": "holding", "address": 200, "type": "uint16", "writable": True,
     "min": 0, "max": 1500},
    {"name": "run", "table": "coil", "address": 0, "type": "bool"},
]
COILS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]


@pytest.fixture
def plc_rig(tmp_path, broker, make_plc, make_agent, mbgate_bin, procs):
    plc = make_plc(init={"holding": {"100": [0xE979, 0x42F6], "200": 7},
                         "coil": {"0": [bool(b) for b in COILS]}})
    conf = write_config(tmp_path, [tcp_device("plc1", plc.port, PLC_TAGS, timeout_ms=500)],
                        broker.port)
    agent = make_agent(conf).start()
    wait_status(mbgate_bin, conf, all_up, desc="plc1 up", procs=procs)
    return plc, conf, agent


def cli(mbgate_bin, conf, *args):
    return run_cli(mbgate_bin, args[0], "-c", conf, *args[1:], timeout=15)


def test_read_write(plc_rig, mbgate_bin):
    plc, conf, agent = plc_rig
    assert plc.get("holding", 100, 2) == encode("float32", 123.456, "CDAB")

    r = cli(mbgate_bin, conf, "read", "plc1", "temp")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "plc1/temp = 123.456", r.stdout
    assert r.stderr == ""

    r = cli(mbgate_bin, conf, "write", "plc1", "sp", "42")
    assert r.returncode == 0, r
    assert re.fullmatch(r"plc1/sp = 42: ok( \(read back 42\))?", r.stdout.strip()), r.stdout
    assert plc.get("holding", 200) == [42]
    r = cli(mbgate_bin, conf, "read", "plc1", "sp")
    assert r.returncode == 0 and r.stdout.strip() == "plc1/sp = 42", r

    # rejected: out of range, nothing written, the code on stderr
    r = cli(mbgate_bin, conf, "write", "plc1", "sp", "1600")
    assert r.returncode == 1, r
    line = one_line(r.stderr)
    assert "out_of_range" in line and "1600" in line and "1500" in line, line
    assert r.stdout == ""
    assert plc.get("holding", 200) == [42]
    # a negative value is a value, not an option
    r = cli(mbgate_bin, conf, "write", "plc1", "sp", "-5")
    assert r.returncode == 1, r
    assert "out_of_range" in one_line(r.stderr), r
    assert plc.get("holding", 200) == [42]
    # not writable / unknown tag: refused with their codes
    r = cli(mbgate_bin, conf, "write", "plc1", "temp", "1")
    assert r.returncode == 1 and "not_writable" in one_line(r.stderr), r
    r = cli(mbgate_bin, conf, "read", "plc1", "nosuch")
    assert r.returncode == 1 and "unknown_tag" in one_line(r.stderr), r
    assert plc.get("holding", 100, 2) == [0xE979, 0x42F6]

    rc, doc, _ = status_json(mbgate_bin, conf)
    assert doc["setpoints"]["ok"] >= 1 and doc["setpoints"]["rejected"] >= 2, doc["setpoints"]
    assert agent.running()


def test_probe(plc_rig, mbgate_bin):
    plc, conf, agent = plc_rig
    r = cli(mbgate_bin, conf, "probe", "plc1", "holding", "100", "2")
    assert r.returncode == 0, r
    out = r.stdout
    # Modicon references, 5- or 6-digit (40101 / 400101 = holding 100)
    assert re.match(r"plc1: holding registers 100\.\.101 \(40?0101\.\.40?0102\)\n", out), out
    # the register table
    assert re.search(r"^40?0101\s+100\s+0xE979\s+-5767\s+59769\b", out, re.M), out
    assert re.search(r"^40?0102\s+101\s+0x42F6\s+17142\s+17142\b", out, re.M), out
    # the 32-bit block: a column per byte order, a row per type
    lines = out.splitlines()
    hi = next((i for i, l in enumerate(lines) if re.match(r"32-bit at 40?0101 ", l)), None)
    assert hi is not None, out
    orders = lines[hi].split()[3:]
    assert orders == ["ABCD", "CDAB", "BADC", "DCBA"], lines[hi]
    rows = {}
    for l in lines[hi + 1:hi + 4]:
        parts = l.split()
        rows[parts[0]] = dict(zip(orders, parts[1:]))
    assert rows["float32"]["CDAB"] == "123.456", out
    assert rows["float32"]["ABCD"] != "123.456", out
    assert rows["uint32"]["CDAB"] == str(0x42F6E979), out
    assert rows["uint32"]["ABCD"] == str(0xE97942F6), out
    assert rows["int32"]["ABCD"] == str(struct.unpack(">i", struct.pack(">I", 0xE97942F6))[0]), out
    assert rows["uint32"]["BADC"] == str(0x79E9F642), out
    assert rows["uint32"]["DCBA"] == str(0xF64279E9), out
    # BADC / DCBA float32 of these registers is not 123.456 either
    assert rows["float32"]["BADC"] != "123.456" and rows["float32"]["DCBA"] != "123.456"
    assert "64-bit" not in out  # two registers: no 64-bit block

    # coils: bits
    r = cli(mbgate_bin, conf, "probe", "plc1", "coil", "0", str(len(COILS)))
    assert r.returncode == 0, r
    bits = []
    for l in r.stdout.splitlines():
        m = re.match(r"^(\d{5,6})\s+(\d+)\s+([01](?: [01])*)$", l)
        if m:
            assert int(m.group(2)) == len(bits), r.stdout  # rows of 8 from address 0
            bits.extend(int(b) for b in m.group(3).split())
    assert bits == COILS, r.stdout
    assert "bits" in r.stdout

    # an unknown device: a clear error, non-zero exit
    r = cli(mbgate_bin, conf, "probe", "nosuch", "holding", "100", "2")
    assert r.returncode != 0, r
    line = one_line(r.stderr)
    assert "nosuch" in line and ("unknown_device" in line or "unknown device" in line), line
    assert r.stdout == ""
    # an unknown table: usage error, names the valid tables
    r = cli(mbgate_bin, conf, "probe", "plc1", "bogus", "0", "2")
    assert r.returncode != 0 and "holding" in one_line(r.stderr), r
    assert agent.running()


# --------------------------------------------------------------------------
# hostile clients on the control socket
# --------------------------------------------------------------------------

def test_hostile_clients_do_not_stall_polling(tmp_path, broker, make_sim, make_agent,
                                              make_collector, mbgate_bin, procs):
    col = make_collector(f"{PREFIX}/plc1/c")
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent)
    sock = sock_path(conf)
    col.wait_messages(f"{PREFIX}/plc1/c", 5, timeout=10)
    wait_status(mbgate_bin, conf, all_up, desc="plc1 up", procs=procs)
    mark = col.mark()
    t0 = time.time()
    results = {"flood": None, "status_ok": 0, "busy": 0, "other": [], "errors": []}
    lock = threading.Lock()

    # 1. connects and says nothing (held for the whole test)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(sock)

    # 2. sends 10 MB without a newline
    def flood():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        sent = 0
        chunk = b"x" * 65536
        try:
            s.connect(sock)
            while sent < 10 * 1024 * 1024:
                sent += s.send(chunk)
            results["flood"] = f"all {sent} bytes taken"
        except OSError as e:
            results["flood"] = f"closed after {sent} bytes: {e!r}"
        finally:
            s.close()

    # 3. 50 clients at once, each asking for the status; in rounds, for ~1.5 s
    def one_client(barrier):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            barrier.wait(10)
            connect_retrying(s, sock)
            try:
                s.sendall(b'{"cmd":"status"}\n')
            except BrokenPipeError:
                pass  # refused as busy before the request went out: the reply is readable
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            rep = json.loads(buf) if buf.strip() else None
            with lock:
                if rep and "health" in rep:
                    results["status_ok"] += 1
                elif rep and rep.get("error") == "busy":
                    results["busy"] += 1
                else:
                    results["other"].append(buf[:200])
        except (OSError, ValueError, threading.BrokenBarrierError) as e:
            with lock:
                results["errors"].append(repr(e))
        finally:
            s.close()

    flooder = threading.Thread(target=flood)
    flooder.start()
    threads = [flooder]
    rounds = 0
    while rounds == 0 or time.time() - t0 < 1.5:
        barrier = threading.Barrier(50)
        batch = [threading.Thread(target=one_client, args=(barrier,)) for _ in range(50)]
        for t in batch:
            t.start()
        for t in batch:
            t.join(20)
        threads += batch
        rounds += 1
    flooder.join(20)
    assert not any(t.is_alive() for t in threads), "a hostile client thread hung"
    procs.assert_alive(agent)
    # keep the silent client and let polling run a little past the flood
    wait_for(lambda: time.time() - t0 >= 2.0, 5, "2 s of polling under attack")

    r = status(mbgate_bin, conf)
    assert r.returncode == 0, r
    assert field(r.stdout, "Health") == "OK", r.stdout
    silent.close()
    procs.assert_alive(agent)

    assert results["flood"] and "closed after" in results["flood"], \
        f"a 10 MB request without newline must be cut off: {results['flood']}"
    assert results["status_ok"] + results["busy"] == 50 * rounds, results
    assert results["status_ok"] >= rounds, results
    assert re.search(r"request over \d+ bytes", agent.log_text()), agent.log_tail()

    # polling went on on schedule: every counter value, ~100 ms apart
    samples = [json.loads(m.payload) for m in col.messages(f"{PREFIX}/plc1/c", mark)]
    samples = [s for s in samples if s.get("q") == "good"]
    assert len(samples) >= 15, f"only {len(samples)} samples in {time.time() - t0:.1f} s"
    vals = [s["v"] for s in samples]
    gaps = [(a, b) for a, b in zip(vals, vals[1:]) if b != (a + 1) % 65536]
    assert not gaps, f"counter jumped (missed polls / lost samples): {gaps[:10]}"
    ts = [s["ts"] for s in samples]
    iv = [b - a for a, b in zip(ts, ts[1:])]
    assert max(iv) < 500 * SLOW, f"max interval between samples {max(iv)} ms: {iv}"
    assert 60 <= sorted(iv)[len(iv) // 2] <= 150, f"median interval off 100 ms: {iv}"


# --------------------------------------------------------------------------
# P/status with counters
# --------------------------------------------------------------------------

def test_status_topic_republished(tmp_path, broker, make_sim, make_agent, make_collector):
    col = make_collector(STATUS_TOPIC)
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent,
                               status={"publish_interval_s": 1})

    def with_counters(d):
        return all(k in d for k in ("published", "pending", "dropped"))
    first = col.wait_message(STATUS_TOPIC, with_counters, timeout=5, raw=True)
    t_first = first.time
    msgs = col.wait_messages(STATUS_TOPIC, 3, with_counters, timeout=4, raw=True)
    assert msgs[2].time - t_first <= 3.5
    docs = [json.loads(m.payload) for m in msgs]
    for d in docs:
        assert d["state"] == "online", d
        for k in ("published", "pending", "dropped"):
            assert isinstance(d[k], int) and not isinstance(d[k], bool) and d[k] >= 0, d
    assert docs[-1]["published"] > docs[0]["published"], docs
    iv = [b.time - a.time for a, b in zip(msgs, msgs[1:])]
    assert all(0.5 <= x <= 1.8 for x in iv), f"intervals {iv} (publish_interval_s = 1)"
    # retained: a newcomer gets the latest counters at once
    m = fetch_retained(broker.port, STATUS_TOPIC, timeout=3, predicate=with_counters)
    assert m is not None, "P/status with counters is not retained"
    assert agent.running()


# --------------------------------------------------------------------------
# the socket: permissions, mode, stale file
# --------------------------------------------------------------------------

def test_permission_denied_names_group(tmp_path, broker, make_sim, make_agent, mbgate_bin, procs):
    # a directory everybody may traverse, so that only the socket's own mode
    # (0660, root:root) keeps the unprivileged user out
    d = Path(tempfile.mkdtemp(prefix="mbg-perm-"))
    try:
        d.chmod(0o755)
        sock = str(d / "mbgate.sock")
        conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent,
                                   control={"socket": sock})
        wait_status(mbgate_bin, conf, all_up, desc="agent up", procs=procs)
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_uid == 0 and st.st_gid == 0
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run as nobody"
        r = run_cli(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                    mbgate_bin, "status", "--socket", sock, timeout=15)
        assert r.returncode == 3, r
        line = one_line(r.stderr)
        assert "permission denied" in line.lower(), line
        assert sock in line, line
        assert re.search(r"join group mbgate|group mbgate", line), line
        assert "UNKNOWN" in r.stdout
        # root (the owner) gets the status through the same socket
        r = run_cli(mbgate_bin, "status", "--socket", sock, timeout=15)
        assert r.returncode == 0, r
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_socket_mode_and_stale_socket_replaced(tmp_path, broker, make_sim, make_agent,
                                               mbgate_bin, procs):
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent)
    sock = sock_path(conf)
    wait_status(mbgate_bin, conf, all_up, desc="agent up", procs=procs)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)

    agent.kill9()
    assert os.path.exists(sock), "kill -9 leaves the socket file behind"
    r = status(mbgate_bin, conf)
    assert r.returncode == 3 and "nobody listening" in one_line(r.stderr), r

    agent.start()
    # the restarted agent answers on the same path. (Right after a restart the
    # health can briefly read WARNING "backlog growing" with nothing pending:
    # that agent bug has its own test below, so here the socket is judged.)
    rc, doc = wait_status(mbgate_bin, conf, lambda d: all_up(d) and d["health"]["code"] == 0,
                          desc="the restarted agent to answer OK", procs=procs)
    assert rc == 0, doc
    assert re.search(r"removed stale socket", agent.log_text()), agent.log_tail()
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    r = status(mbgate_bin, conf)
    assert r.returncode == 0 and field(r.stdout, "Health") == "OK", r

    # a clean stop removes the socket
    assert agent.stop() == 0
    assert not os.path.exists(sock)


# --------------------------------------------------------------------------
# last, so that `pytest -x` runs everything else first
# --------------------------------------------------------------------------

def test_no_backlog_growing_without_backlog(tmp_path, broker, make_sim, make_agent, mbgate_bin,
                                            procs):
    """"backlog growing" (a WARNING reason) must not be claimed while the
    broker is connected and nothing is pending. Watched from the agent's
    start, and from the moment the broker comes back after an outage."""
    conf, _, agent = start_rig(tmp_path, broker, make_sim, make_agent, ndev=2)
    seen, bad = [0], []

    def watch(phase, until):
        t0 = time.monotonic()
        while True:
            rc, doc, r = status_json(mbgate_bin, conf)
            if doc is None:
                continue
            seen[0] += 1
            ob, br = doc["outbox"], doc["broker"]
            if br["connected"] and ob["pending"] == 0 and \
                    (ob["growing"] or "backlog growing" in doc["health"]["reasons"]):
                bad.append((phase, round(time.monotonic() - t0, 2), rc, doc["health"], ob))
            if until(doc, time.monotonic() - t0):
                return doc

    # from the start: OK within a few seconds, never a phantom backlog
    watch("start", lambda d, t: t > 2.0 and d["health"]["code"] == 0 or t > 6)
    for outage in (1, 2):  # the window is short: look twice unless already seen
        broker.stop()
        wait_status(mbgate_bin, conf,
                    lambda d: d["outbox"]["growing"] and not d["broker"]["connected"],
                    desc="a growing backlog while the broker is down", procs=procs)
        broker.start()
        doc = watch(f"after outage {outage}",
                    lambda d, t: t > 1.5 and d["health"]["code"] == 0 or t > 8)
        if bad:
            break
    assert seen[0] >= 20 / SLOW, f"only {seen[0]} status answers"
    assert not bad, (f"{len(bad)} of {seen[0]} status answers claim a growing backlog with the "
                     f"broker connected and 0 pending, e.g. {bad[:3]}")
    assert doc["health"] == {"code": 0, "status": "OK", "reasons": []}, doc["health"]


def test_cli_options_after_arguments(plc_rig, mbgate_bin):
    """`mbgate read plc1 temp -c CONF` (the form in the issue): the option
    after the positional arguments is honoured."""
    plc, conf, agent = plc_rig
    r = run_cli(mbgate_bin, "read", "plc1", "temp", "-c", conf, timeout=15)
    assert r.returncode == 0, r
    assert r.stdout.strip() == "plc1/temp = 123.456", r
    r = run_cli(mbgate_bin, "status", "--json", "-c", conf, timeout=15)
    assert r.returncode == 0 and json.loads(r.stdout)["gateway"] == "itest", r
