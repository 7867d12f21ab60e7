"""The agent under Valgrind memcheck, end to end (issue #10).

One scenario: `mbgate sim` -> `valgrind mbgate run` -> mosquitto, with a
setpoint write (and a refused one), a status request through the control
socket, a broker restart and SIGTERM. Valgrind must report no error and no
definitely lost block, and the agent must exit 0 (valgrind's own exit code
is 99 on any error or definite leak, as set below).

Only a missing valgrind binary skips this test -- and a sanitizer build
(`make asan`, `make tsan`): valgrind cannot run an ASan/TSan binary (their
shadow memory), and `make check` has run this test on the plain build
already.
"""
import json
import re
import shutil
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import (PREFIX, Agent, now_ms, run_cli, tcp_device, write_config)

VALGRIND = shutil.which("valgrind")

pytestmark = pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed")


def sanitized(binary):
    """Is binary built with ASan/TSan/MSan? (valgrind cannot run it)"""
    data = Path(binary).read_bytes()
    return any(s in data for s in (b"__asan_init", b"__tsan_init", b"__msan_init"))

TAGS = [
    {"name": "counter", "table": "holding", "address": 0, "type": "uint32", "sim": "counter"},
    {"name": "temp", "table": "holding", "address": 10, "type": "float32", "byte_order": "CDAB",
     "min": 15.0, "max": 30.0, "sim": "drift"},
    {"name": "label", "table": "holding", "address": 20, "type": "string", "length": 8,
     "sim": "fixed", "sim_value": "vg-test"},
    {"name": "sp", "table": "holding", "address": 40, "type": "uint16", "writable": True,
     "min": 0, "max": 1500, "sim": "fixed", "sim_value": 750},
    {"name": "run", "table": "coil", "address": 0, "type": "bool", "writable": True,
     "sim": "fixed", "sim_value": False},
]


class ValgrindAgent(Agent):
    """`valgrind ... mbgate run -c CONF`, valgrind's report in its own file."""

    def __init__(self, registry, binary, conf, tmp_path, name="agent-vg"):
        super().__init__(registry, binary, conf, tmp_path, name=name)
        self.vg_log = Path(tmp_path) / f"{name}.valgrind"
        self.argv = [VALGRIND, "--tool=memcheck", "--leak-check=full",
                     "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                     "--error-exitcode=99", "--num-callers=30", "--trace-children=no",
                     f"--log-file={self.vg_log}", *self.argv]

    def vg_text(self):
        try:
            return self.vg_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def publish(port, topic, payload):
    c = mqtt.Client(client_id=f"vg-cmd-{time.monotonic_ns()}", clean_session=True)
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()


def test_agent_under_valgrind(tmp_path, procs, broker, make_collector, make_sim, mbgate_bin):
    if sanitized(mbgate_bin):
        pytest.skip("MBGATE_BIN is a sanitizer build; valgrind runs on the plain one")
    t_start = time.monotonic()
    sim_conf = write_config(tmp_path, [tcp_device("plc1", 1, TAGS)], broker.port,
                            filename="sim.conf")
    sim = make_sim(sim_conf).start()
    conf = write_config(tmp_path, [tcp_device("plc1", sim.port, TAGS, poll_ms=250,
                                              timeout_ms=2000)], broker.port)
    col = make_collector(f"{PREFIX}/#")
    agent = ValgrindAgent(procs, mbgate_bin, conf, tmp_path).start()
    # valgrind makes everything ~20x slower: generous timeouts
    col.wait_message(f"{PREFIX}/status", lambda d: d.get("state") == "online", timeout=30)
    col.wait_message(f"{PREFIX}/plc1/label", lambda d: d.get("v") == "vg-test", timeout=20)
    col.wait_messages(f"{PREFIX}/plc1/counter", 3, timeout=20)

    # a setpoint write (validated, written, verified), then a refused one
    publish(broker.port, f"{PREFIX}/plc1/sp/set",
            json.dumps({"v": 1200, "id": "vg-ok", "ts": now_ms()}))
    res = col.wait_message(f"{PREFIX}/plc1/sp/set/result",
                           lambda d: d.get("id") == "vg-ok", timeout=20)
    assert res.get("ok") is True, res
    col.wait_message(f"{PREFIX}/plc1/sp", lambda d: d.get("v") == 1200, timeout=20)
    # a status request through the control socket (the CLI runs natively);
    # asked before the refused command below, whose invalid UTF-8 makes the
    # status unavailable until the next setpoint (a bug reported in #10)
    sock = re.search(r'socket = "([^"]+)"', Path(conf).read_text()).group(1)
    st = run_cli(mbgate_bin, "status", "--json", "--socket", sock, timeout=30)
    assert st.stdout.strip(), st.stderr
    assert "outbox" in json.loads(st.stdout)

    publish(broker.port, f"{PREFIX}/plc1/sp/set", b'{"v":"x","id":"vg-bad"}\xff')
    res = col.wait_message(f"{PREFIX}/plc1/sp/set/result",
                           lambda d: d.get("id", "") in ("vg-bad", "") and d.get("ok") is False,
                           timeout=20)
    assert res.get("error") == "bad_payload", res

    # broker restart: reconnect, re-birth, data flows again
    assert broker.stop() == 0
    time.sleep(1)
    broker.start()
    col2 = make_collector(f"{PREFIX}/#")
    mark_ts = now_ms()
    col2.wait_message(f"{PREFIX}/plc1/counter", lambda d: d.get("ts", 0) >= mark_ts,
                      timeout=40)

    # SIGTERM: clean exit, and a clean report
    rc = agent.stop(timeout=60)
    report = agent.vg_text()
    assert "ERROR SUMMARY:" in report, f"no valgrind summary:\n{report[-3000:]}"
    assert "ERROR SUMMARY: 0 errors" in report, f"valgrind errors:\n{report[-8000:]}"
    assert not re.search(r"definitely lost: [1-9]", report), f"leaks:\n{report[-8000:]}"
    assert rc == 0, f"agent exit {rc} (99: valgrind found errors)\n{agent.log_tail()}\n{report[-3000:]}"
    assert time.monotonic() - t_start < 60, "the valgrind scenario took over 60 s"
