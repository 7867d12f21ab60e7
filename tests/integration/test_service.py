"""Service behaviour (issue #7): SIGHUP reload, SIGTERM, systemd notify and
journal priorities."""
import os
import re
import signal
import socket
import time

from conftest import (SLOW, PREFIX, Agent, fetch_retained, free_port, tcp_device, wait_for,
                      write_config)


def tags(*names):
    return [{"name": n, "table": "holding", "address": i, "type": "uint16", "sim": "counter"}
            for i, n in enumerate(names)]


def test_sighup_adds_and_removes_tags_without_dropping_the_broker(
        tmp_path, broker, collector, make_sim, make_agent):
    port = free_port()
    conf = write_config(tmp_path, [tcp_device("plc1", port, tags("a", "b"))],
                        broker_port=broker.port)
    sim = make_sim(conf, port=port).start()
    agent = make_agent(conf).start()
    collector.wait_message(f"{PREFIX}/plc1/b", timeout=15)
    write_config(tmp_path, [tcp_device("plc1", port, tags("a", "c")),
                            tcp_device("plc2", port, tags("x"))], broker_port=broker.port)
    births = len(collector.messages(f"{PREFIX}/status"))
    agent.signal(signal.SIGHUP)
    agent.wait_log(r"reloaded: 2 devices", 10)
    mark = collector.mark()
    collector.wait_message(f"{PREFIX}/plc1/c", timeout=10, after=mark)
    collector.wait_message(f"{PREFIX}/plc2/x", timeout=10, after=mark)
    time.sleep(0.5)
    mark2 = collector.mark()
    time.sleep(1)
    assert not collector.messages(f"{PREFIX}/plc1/b", after=mark2), "removed tag still published"
    # one broker session throughout: no new birth, no reconnect
    assert len(collector.messages(f"{PREFIX}/status")) == births
    assert len(re.findall(r"mqtt: connected", agent.log_text())) == 1
    assert agent.running()
    sim.stop()


def test_sighup_with_invalid_config_keeps_running(tmp_path, broker, collector, make_sim,
                                                  make_agent):
    port = free_port()
    conf = write_config(tmp_path, [tcp_device("plc1", port, tags("a"))], broker_port=broker.port)
    make_sim(conf, port=port).start()
    agent = make_agent(conf).start()
    collector.wait_message(f"{PREFIX}/plc1/a", timeout=15)
    good = conf.read_text()
    conf.write_text(good.replace('type = "uint16"', 'type = "float"'))
    agent.signal(signal.SIGHUP)
    agent.wait_log(r"reload refused", 10)
    assert re.search(r"mbgate\.conf:\d+: .*unknown type \"float\"", agent.log_text())
    mark = collector.mark()
    collector.wait_message(f"{PREFIX}/plc1/a", timeout=5, after=mark)
    assert agent.running()


def test_sigterm_exits_zero_quickly_and_flushes(tmp_path, broker, collector, make_sim, make_agent):
    port = free_port()
    conf = write_config(tmp_path, [tcp_device("plc1", port, tags("a"))], broker_port=broker.port)
    make_sim(conf, port=port).start()
    agent = make_agent(conf).start()
    collector.wait_message(f"{PREFIX}/plc1/a", timeout=15)
    t0 = time.monotonic()
    assert agent.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5 * SLOW
    m = fetch_retained(broker.port, f"{PREFIX}/status")
    assert m is not None and b'"offline"' in m.payload
    # everything polled was delivered or is still in the outbox: nothing in between
    import sqlite3
    db = sqlite3.connect(tmp_path / "state" / "outbox.db")
    left = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    db.close()
    got = [p["v"] for p in collector.payloads(f"{PREFIX}/plc1/a") if p.get("q") == "good"]
    assert got == list(range(got[0], got[0] + len(got))) and left == 0


def test_systemd_notify_and_journal_priorities(tmp_path, broker, procs, mbgate_bin, make_sim):
    port = free_port()
    conf = write_config(tmp_path, [tcp_device("plc1", port, tags("a"))], broker_port=broker.port)
    make_sim(conf, port=port).start()
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, JOURNAL_STREAM="8:12345")
    agent = Agent(procs, mbgate_bin, conf, tmp_path)
    agent.env = env
    agent.start()
    got = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("STATUS=1/1 devices up" in g for g in got):
        got.append(ns.recv(4096).decode())
    assert any("READY=1" in g for g in got), got
    status = [g for g in got if "STATUS=" in g]
    assert status and "broker connected" in status[-1], got
    assert any("WATCHDOG=1" in g for g in got), got
    agent.signal(signal.SIGTERM)
    while True:
        g = ns.recv(4096).decode()
        if "STOPPING=1" in g:
            break
    assert agent.wait(10) == 0
    ns.close()
    lines = [l for l in agent.log_text().splitlines() if l]
    assert lines and all(re.match(r"<[0-7]>", l) for l in lines), lines[:5]
    assert any(l.startswith("<6>mbgate ") for l in lines)
