"""MQTT in production (issue #8): TLS, authentication, MQTT 5, QoS, failover.

Against real mosquitto 2.0 brokers. TLS material is made at test time with
the openssl CLI (tls_util.make_pki); brokers with TLS or password listeners
run from their own mosquitto.conf (tls_util.MosquittoConf). Data is checked
with a `sim = "counter"` tag: the simulator increments it on every read, so
a gap in its values is a lost sample and a repeated value a duplicate.
P = "mbgate/itest".
"""
import json
import os
import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import (SLOW, PREFIX, Broker, fetch_retained, free_port, run_cli, tcp_device,
                      wait_for, write_config)
from tls_util import MosquittoConf, make_pki, plain_listener, tls_listener

DATA = f"{PREFIX}/plc1/c"


# ---------------------------------------------------------------- helpers

class Sub:
    """A paho client (any QoS, 3.1.1 or 5, optional credentials) collecting
    every message on topic_filter. Reconnects and resubscribes by itself."""

    _seq = 0

    def __init__(self, port, topic_filter="#", qos=1, protocol="3.1.1", username=None,
                 password=None):
        Sub._seq += 1
        self.v5 = str(protocol) == "5"
        self.topic_filter, self.qos = topic_filter, qos
        cid = f"itest-mq-{os.getpid()}-{Sub._seq}"
        if self.v5:
            self.client = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(client_id=cid, clean_session=True, protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.msgs = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a, **k: self.subscribed.clear()
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            pytest.fail(f"subscriber could not subscribe on port {port}", pytrace=False)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.subscribed.clear()
        client.subscribe(self.topic_filter, qos=self.qos)

    def _on_message(self, client, userdata, m):
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), m.qos, bool(m.retain),
                              getattr(m, "properties", None)))

    def messages(self, topic=None):
        with self.lock:
            return [m for m in self.msgs
                    if topic is None or mqtt.topic_matches_sub(topic, m[0])]

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        kw = {"properties": properties} if properties is not None else {}
        info = self.client.publish(topic, payload, qos=qos, retain=retain, **kw)
        info.wait_for_publish(5)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


@pytest.fixture
def make_sub():
    made = []

    def make(port, *a, **kw):
        s = Sub(port, *a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def counter_device(port, poll_ms=100, extra_tags=()):
    return tcp_device("plc1", port, [{"name": "c", "table": "holding", "address": 0,
                                      "type": "uint32", "sim": "counter"}, *extra_tags],
                      poll_ms=poll_ms)


def values(sub, topic=DATA):
    """Counter values received on topic, in arrival order."""
    out = []
    for m in sub.messages(topic):
        d = json.loads(m[1])
        if d.get("q") == "good":
            out.append(d["v"])
    return out


def missing(vals):
    """Counter values absent between the lowest and the highest seen."""
    s = set(vals)
    return sorted(set(range(min(s), max(s) + 1)) - s) if s else []


def agent_status(mbgate_bin, conf):
    sock = re.search(r'socket = "([^"]+)"', Path(conf).read_text()).group(1)
    r = run_cli(mbgate_bin, "status", "--json", "--socket", sock, timeout=10)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def wait_status(mbgate_bin, conf, pred, desc, timeout=10.0, diag=None):
    def ok():
        s = agent_status(mbgate_bin, conf)
        return s if s and pred(s) else None
    return wait_for(ok, timeout, desc, interval=0.2, diag=diag)


def start(tmp_path, make_sim, make_agent, mqtt_cfg, filename="mbgate.conf", name="agent",
          sim=None, extra_tags=(), poll_ms=100, env=None, **sections):
    """Write a config (mqtt section mqtt_cfg), start the sim (unless given)
    and the agent; returns (conf, sim, agent)."""
    port = sim.port if sim else free_port()
    conf = write_config(tmp_path, [counter_device(port, poll_ms, extra_tags)],
                        filename=filename, mqtt=mqtt_cfg, **sections)
    if sim is None:
        sim = make_sim(conf, port).start()
    agent = make_agent(conf, name=name)
    if env is not None:
        agent.env = env
    agent.start()
    return conf, sim, agent


# ---------------------------------------------------------------- TLS

class TlsBroker:
    """One mosquitto with a plain listener (for test subscribers) and TLS
    listeners: .tls (certificate for localhost/127.0.0.1), .wrong (a
    certificate for wrong.example), .mutual (client certificate required);
    all certificates from the test CA."""

    def __init__(self, procs, tmp_path, pki):
        self.plain, self.tls, self.wrong, self.mutual = (free_port() for _ in range(4))
        self.proc = MosquittoConf(procs, tmp_path, [
            plain_listener(self.plain),
            tls_listener(self.tls, pki),
            tls_listener(self.wrong, pki, cert="wrong_server"),
            tls_listener(self.mutual, pki, require_certificate=True),
        ], global_lines=["allow_anonymous true"], name="mosquitto-tls").start()


@pytest.fixture
def tls_broker(procs, tmp_path, pki):
    return TlsBroker(procs, tmp_path, pki)


def tls_mqtt(port, host="localhost", **tls):
    return {"host": host, "port": port, "tls": tls}


def assert_refused(mbgate_bin, conf, agent, sub, regex, status_text):
    """The agent logs the reason as one line (not one per attempt), shows it
    in status broker.last_error, and publishes nothing."""
    agent.wait_log(r"warning: mqtt: [^ ]+: " + regex, timeout=10)
    st = wait_status(mbgate_bin, conf, lambda s: s["broker"]["reconnects"] >= 2,
                     "two failed connection attempts", diag=agent.diag)
    assert st["broker"]["connected"] is False, st["broker"]
    assert status_text in st["broker"]["last_error"], st["broker"]
    assert st["broker"]["last_error_ts"] > 0, st["broker"]
    lines = re.findall(r"^.*mqtt: .*" + regex + ".*$", agent.log_text(), re.M)
    assert len(lines) == 1, f"expected one log line for the refusal, got {lines}"
    assert values(sub) == [], "data reached the broker over a refused connection"


@pytest.mark.parametrize("trust,host", [("ca_file", "localhost"), ("ca_path", "127.0.0.1")])
def test_tls_verified_broker_delivers(trust, host, tmp_path, tls_broker, pki, make_sub,
                                      make_sim, make_agent, mbgate_bin):
    """The broker's certificate checked against tls.ca_file or tls.ca_path,
    its name against a DNS name or an IP address SAN."""
    sub = make_sub(tls_broker.plain, f"{PREFIX}/#")
    tls = {"ca_file": str(pki.ca)} if trust == "ca_file" else {"ca_path": str(pki.ca_dir)}
    conf, _, agent = start(tmp_path, make_sim, make_agent,
                           tls_mqtt(tls_broker.tls, host=host, **tls))
    agent.wait_log(rf"info: mqtt: connected to {host}:\d+ over TLS", timeout=10)
    wait_for(lambda: len(values(sub)) >= 5, 10, "data over TLS", diag=agent.diag)
    st = wait_status(mbgate_bin, conf, lambda s: s["broker"]["connected"], "connected")
    assert st["broker"]["last_error"] == "", st["broker"]
    assert "verification is OFF" not in agent.log_text()


@pytest.mark.parametrize("ca", ["other_ca", "system_store"])
def test_tls_untrusted_broker_refused(ca, tmp_path, tls_broker, pki, make_sub, make_sim,
                                      make_agent, mbgate_bin):
    """A CA that did not sign the broker's certificate, or the system store
    (which does not know the test CA): the handshake fails, clearly."""
    sub = make_sub(tls_broker.plain, f"{PREFIX}/#")
    tls = {"ca_file": str(pki.other_ca)} if ca == "other_ca" else {}
    conf, _, agent = start(tmp_path, make_sim, make_agent, tls_mqtt(tls_broker.tls, **tls))
    assert_refused(mbgate_bin, conf, agent, sub,
                   r"TLS handshake failed: certificate verify failed \(.+\)",
                   "TLS handshake failed: certificate verify failed")


def test_tls_hostname_checked_unless_disabled(tmp_path, tls_broker, pki, make_sub, make_sim,
                                              make_agent, mbgate_bin):
    sub = make_sub(tls_broker.plain, f"{PREFIX}/#")
    conf, sim, agent = start(tmp_path, make_sim, make_agent,
                             tls_mqtt(tls_broker.wrong, ca_file=str(pki.ca)))
    assert_refused(mbgate_bin, conf, agent, sub,
                   r'TLS handshake failed: host name verification failed '
                   r'\(the broker\'s certificate is not valid for "localhost"\)',
                   "host name verification failed")
    agent.stop()
    # verify_hostname = false: the chain is still checked, the name is not
    conf2, _, agent2 = start(tmp_path, make_sim, make_agent,
                             tls_mqtt(tls_broker.wrong, ca_file=str(pki.ca),
                                      verify_hostname=False),
                             filename="noname.conf", name="agent-noname", sim=sim)
    agent2.wait_log(r"warning: mqtt: TLS host name verification is off", timeout=5)
    agent2.wait_log(r"info: mqtt: connected to localhost:\d+ over TLS", timeout=10)
    n = len(values(sub))
    wait_for(lambda: len(values(sub)) >= n + 3, 10, "data", diag=agent2.diag)
    # ... and a wrong CA is still refused without the name check
    agent2.stop()
    conf3, _, agent3 = start(tmp_path, make_sim, make_agent,
                             tls_mqtt(tls_broker.wrong, ca_file=str(pki.other_ca),
                                      verify_hostname=False),
                             filename="noname-badca.conf", name="agent-noname-badca", sim=sim)
    agent3.wait_log(r"mqtt: localhost:\d+: TLS handshake failed: certificate verify failed",
                    timeout=10)


def test_tls_insecure_connects_and_says_so(tmp_path, tls_broker, pki, make_sub, make_sim,
                                           make_agent):
    """tls.insecure = true: neither chain nor name is checked, loudly."""
    sub = make_sub(tls_broker.plain, f"{PREFIX}/#")
    _, _, agent = start(tmp_path, make_sim, make_agent,
                        tls_mqtt(tls_broker.wrong, ca_file=str(pki.other_ca), insecure=True))
    agent.wait_log(r"info: mqtt: connected to localhost:\d+ over TLS", timeout=10)
    warn = r"warning: mqtt: TLS certificate verification is OFF \(tls.insecure = true\)"
    # at startup and again on the connection
    wait_for(lambda: len(re.findall(warn, agent.log_text())) >= 2, 5, "two warnings",
             diag=agent.diag)
    wait_for(lambda: len(values(sub)) >= 3, 10, "data", diag=agent.diag)


def test_mutual_tls(tmp_path, tls_broker, pki, make_sub, make_sim, make_agent, mbgate_bin):
    sub = make_sub(tls_broker.plain, f"{PREFIX}/#")
    # without a client certificate the broker refuses
    conf, sim, agent = start(tmp_path, make_sim, make_agent,
                             tls_mqtt(tls_broker.mutual, ca_file=str(pki.ca)))
    assert_refused(mbgate_bin, conf, agent, sub,
                   r"TLS handshake failed: .*certificate.* \(the broker wants a client "
                   r"certificate: set tls.cert_file and tls.key_file\)",
                   "TLS handshake failed")
    agent.stop()
    # with one it works
    conf2, _, agent2 = start(tmp_path, make_sim, make_agent,
                             tls_mqtt(tls_broker.mutual, ca_file=str(pki.ca),
                                      cert_file=str(pki.client), key_file=str(pki.client_key)),
                             filename="mtls.conf", name="agent-mtls", sim=sim)
    agent2.wait_log(r"info: mqtt: connected to localhost:\d+ over TLS", timeout=10)
    wait_for(lambda: len(values(sub)) >= 3, 10, "data over mutual TLS", diag=agent2.diag)


# ---------------------------------------------------------------- passwords

SECRET = "Zq9-very-secret-pw"


@pytest.fixture
def pw_broker(procs, tmp_path):
    """mosquitto with allow_anonymous false and a password file: users
    gw (SECRET) and reader (readpw)."""
    pwfile = tmp_path / "mosquitto.passwd"
    for i, (user, pw) in enumerate((("gw", SECRET), ("reader", "readpw"))):
        args = ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [pwfile, user, pw]
        r = run_cli(args[0], *args[1:])
        assert r.returncode == 0, r.stderr
    pwfile.chmod(0o644)
    port = free_port()
    b = MosquittoConf(procs, tmp_path, [plain_listener(port)],
                      global_lines=["allow_anonymous false", f"password_file {pwfile}"],
                      name="mosquitto-pw").start()
    b.port = port
    return b


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_password_refused_clearly_and_never_shown(protocol, tmp_path, pw_broker, make_sub,
                                                  make_sim, make_agent, mbgate_bin):
    sub = make_sub(pw_broker.port, f"{PREFIX}/#", username="reader", password="readpw")
    bad = tmp_path / "bad.secret"
    bad.write_text("not-the-password\n")
    conf, sim, agent = start(tmp_path, make_sim, make_agent,
                             {"port": pw_broker.port, "username": "gw",
                              "password_file": str(bad), "protocol": protocol})
    reason = (r"not authorised \(CONNACK code 5\)|bad user name or password \(CONNACK code 4\)"
              if protocol == "3.1.1" else
              r"(Not authorized|Bad user name or password) \(reason code 0x8[67]\)")
    assert_refused(mbgate_bin, conf, agent, sub,
                   r"broker refused the connection: (" + reason + ")",
                   "broker refused the connection: ")
    agent.stop()
    # the right password, from the file
    good = tmp_path / "good.secret"
    good.write_text(SECRET + "\n")
    conf2, _, agent2 = start(tmp_path, make_sim, make_agent,
                             {"port": pw_broker.port, "username": "gw",
                              "password_file": str(good), "protocol": protocol},
                             filename="good.conf", name="agent-good", sim=sim)
    agent2.wait_log(r"info: mqtt: connected to 127.0.0.1:\d+", timeout=10)
    wait_for(lambda: len(values(sub)) >= 3, 10, "data with a password", diag=agent2.diag)
    st = agent_status(mbgate_bin, conf2)
    cmdline = Path(f"/proc/{agent2.pid}/cmdline").read_bytes()
    assert SECRET.encode() not in cmdline
    agent2.stop()
    for a in (agent, agent2):
        assert SECRET not in a.log_text() and "not-the-password" not in a.log_text()
    assert SECRET not in json.dumps(st)


def test_password_from_systemd_credential(tmp_path, pw_broker, make_sub, make_sim, make_agent):
    """$CREDENTIALS_DIRECTORY/mqtt-password wins over password_file."""
    sub = make_sub(pw_broker.port, f"{PREFIX}/#", username="reader", password="readpw")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text(SECRET + "\n")
    bad = tmp_path / "stale.secret"
    bad.write_text("stale\n")
    _, _, agent = start(tmp_path, make_sim, make_agent,
                        {"port": pw_broker.port, "username": "gw", "password_file": str(bad)},
                        env=dict(os.environ, CREDENTIALS_DIRECTORY=str(creds)))
    agent.wait_log(r"info: mqtt: connected to 127.0.0.1:\d+", timeout=10)
    wait_for(lambda: len(values(sub)) >= 3, 10, "data", diag=agent.diag)
    assert SECRET not in agent.log_text()


# ---------------------------------------------------------------- MQTT 5

SP_TAGS = [{"name": "sp1", "table": "holding", "address": 10, "type": "uint16",
            "writable": True, "sim": "fixed", "sim_value": 5},
           {"name": "sp2", "table": "holding", "address": 11, "type": "uint16",
            "writable": True, "sim": "fixed", "sim_value": 5}]


def last_value(sub, tag):
    v = values(sub, f"{PREFIX}/plc1/{tag}")
    return v[-1] if v else None


def test_mqtt5_expired_setpoint_not_executed(tmp_path, broker, make_sub, make_sim, make_agent):
    """Two retained commands are published before the agent starts, one
    with Message Expiry Interval 1 s. After 2 s the broker has dropped it:
    the agent (accept_retained = true) executes only the other one."""
    cmd = make_sub(broker.port, "nothing/here", protocol="5")
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    cmd.publish(f"{PREFIX}/plc1/sp1/set", "111", retain=True, properties=props)
    cmd.publish(f"{PREFIX}/plc1/sp2/set", "222", retain=True)
    time.sleep(2.2)
    assert fetch_retained(broker.port, f"{PREFIX}/plc1/sp1/set", timeout=0.5,
                          protocol="5") is None, "the broker kept the expired command"
    sub = make_sub(broker.port, f"{PREFIX}/#", protocol="5")
    _, _, agent = start(tmp_path, make_sim, make_agent, {"port": broker.port, "protocol": "5"},
                        extra_tags=SP_TAGS, setpoints={"accept_retained": True})
    res = wait_for(lambda: [json.loads(m[1])
                            for m in sub.messages(f"{PREFIX}/plc1/sp2/set/result")],
                   10, "the result of the unexpired command", diag=agent.diag)
    assert res[0]["ok"] is True and res[0]["v"] == 222, res
    wait_for(lambda: last_value(sub, "sp2") == 222, 5, "sp2 = 222 read back", diag=agent.diag)
    time.sleep(0.5)  # a late write of the expired command would show here
    assert sub.messages(f"{PREFIX}/plc1/sp1/set/result") == []
    assert last_value(sub, "sp1") == 5
    assert "setpoint plc1/sp1" not in agent.log_text()
    assert re.search(r"setpoint plc1/sp2 = 222 .*: ok", agent.log_text())


def test_mqtt5_response_topic(tmp_path, broker, make_sub, make_sim, make_agent):
    replies = make_sub(broker.port, "itest/replies/#", protocol="5")
    _, _, agent = start(tmp_path, make_sim, make_agent, {"port": broker.port, "protocol": "5"},
                        extra_tags=SP_TAGS)
    agent.wait_log(r"info: mqtt: connected to .*\(MQTT 5\)", timeout=10)
    wait_for(lambda: "plc1: up" in agent.log_text(), 10, "plc1 up", diag=agent.diag)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "itest/replies/r1"
    props.CorrelationData = b"\x00corr-42\xff"
    replies.publish(f"{PREFIX}/plc1/sp2/set", json.dumps({"v": 42, "id": "m5"}),
                    properties=props)
    m = wait_for(lambda: replies.messages("itest/replies/r1"), 10, "the reply",
                 diag=agent.diag)[0]
    assert json.loads(m[1])["ok"] is True and json.loads(m[1])["id"] == "m5", m
    assert getattr(m[4], "CorrelationData", None) == b"\x00corr-42\xff", m[4]


def test_mqtt5_refused_publish_reason_logged_and_kept(tmp_path, procs, make_sub, make_sim,
                                                      make_agent, mbgate_bin):
    """The broker's ACL forbids the data topics: under MQTT 5 it answers the
    data with PUBACK reason code 0x87. One clear line, status last_error,
    and the samples stay in the outbox instead of counting as delivered."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n"
                   f"topic write {PREFIX}/status\n"
                   f"topic write {PREFIX}/+/status\n")
    acl.chmod(0o644)
    port = free_port()
    MosquittoConf(procs, tmp_path, [plain_listener(port)],
                  global_lines=["allow_anonymous true", f"acl_file {acl}"],
                  name="mosquitto-acl", unlimited_queue=False).start()
    sub = make_sub(port, f"{PREFIX}/#")
    conf, _, agent = start(tmp_path, make_sim, make_agent, {"port": port, "protocol": "5"})
    line = (r"broker refused a message: Not authorized \(reason code 0x87\); "
            r"it stays in the outbox")
    agent.wait_log(r"warning: mqtt: 127.0.0.1:\d+: " + line, timeout=10)
    st = wait_status(mbgate_bin, conf, lambda s: s["outbox"]["pending"] >= 15,
                     "samples kept in the outbox", diag=agent.diag)
    assert st["broker"]["connected"] is True, st["broker"]
    assert re.search(line, st["broker"]["last_error"]), st["broker"]
    assert st["broker"]["acked"] == 0, st["broker"]
    assert len(re.findall(line, agent.log_text())) == 1, "one line, not one per message"
    assert values(sub) == []
    assert sub.messages(f"{PREFIX}/status"), "the birth (allowed) did not arrive"


# ---------------------------------------------------------------- QoS

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_qos_end_to_end_no_gap_no_duplicate(qos, tmp_path, broker, make_sub, make_sim,
                                            make_agent, mbgate_bin):
    """Data at QoS 0/1/2 to a subscriber at the same QoS: every counter value
    exactly once; the outbox empties as the broker acknowledges (QoS 0: as
    written) instead of piling up in flight."""
    sub = make_sub(broker.port, DATA, qos=qos)
    conf, sim, agent = start(tmp_path, make_sim, make_agent, {"port": broker.port, "qos": qos},
                             poll_ms=20)
    # more than mqtt.max_inflight (100): unacknowledged messages would stall it
    wait_for(lambda: len(values(sub)) >= 120, 20, "120 samples", diag=agent.diag)
    st = wait_status(mbgate_bin, conf,
                     lambda s: s["broker"]["acked"] >= 120 and s["outbox"]["pending"] <= 10
                     and s["broker"]["inflight"] <= 10,
                     f"QoS {qos} acks to empty the outbox", diag=agent.diag)
    sim.stop()
    wait_status(mbgate_bin, conf, lambda s: s["outbox"]["pending"] == 0 and
                s["broker"]["inflight"] == 0, "an empty outbox", diag=agent.diag)
    time.sleep(0.3)
    v = values(sub)
    assert missing(v) == [], f"QoS {qos}: lost {missing(v)[:20]}"
    dups = sorted({x for x in v if v.count(x) > 1})
    assert dups == [], f"QoS {qos}: duplicates {dups[:20]}"
    assert all(m[2] == qos for m in sub.messages(DATA)), "delivered at another QoS"
    assert st["broker"]["connected"]


# ---------------------------------------------------------------- failover

def test_broker_failover_loses_nothing(tmp_path, procs, broker, make_sub, make_sim, make_agent,
                                       mbgate_bin):
    a, b = broker, Broker(procs, tmp_path).start()
    sub_a = make_sub(a.port, DATA)
    sub_b = make_sub(b.port, DATA)
    conf, sim, agent = start(tmp_path, make_sim, make_agent,
                             {"host": None, "port": None,
                              "brokers": [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]},
                             poll_ms=50)

    def union():
        return values(sub_a) + values(sub_b)

    def diag():
        return f"missing {missing(union())[:30]}\n{procs.diag()}"

    agent.wait_log(rf"info: mqtt: connected to 127.0.0.1:{a.port}", timeout=10)
    wait_for(lambda: len(values(sub_a)) >= 20, 10, "data on the first broker", diag=diag)
    a.kill()  # kill -9 mid-stream
    t0 = time.monotonic()
    agent.wait_log(rf"info: mqtt: connected to 127.0.0.1:{b.port}", timeout=10)
    assert time.monotonic() - t0 < 3 * SLOW, "the agent did not move on to the second broker at once"
    n_b = len(values(sub_b))
    wait_for(lambda: len(values(sub_b)) >= n_b + 20, 10, "data on the second broker", diag=diag)
    wait_for(lambda: missing(union()) == [], 10, "no gap after the first move", diag=diag)
    # the first broker comes back; its subscriber is back before the agent moves
    a.start()
    wait_for(sub_a.subscribed.is_set, 10, "the subscriber back on the first broker")
    n_a = len(values(sub_a))
    b.kill()
    agent.wait_log(rf"(?s)connected to 127.0.0.1:{b.port}.*connected to 127.0.0.1:{a.port}",
                   timeout=10)
    wait_for(lambda: len(values(sub_a)) >= n_a + 20, 10, "data on the first broker again",
             diag=diag)
    sim.stop()
    wait_status(mbgate_bin, conf, lambda s: s["outbox"]["pending"] == 0, "an empty outbox",
                diag=diag)
    time.sleep(0.3)
    u = union()
    assert missing(u) == [], f"lost in the moves: {missing(u)[:30]}"
    # each loss of the current broker is one clear log line
    for p in (a.port, b.port):
        lost = re.findall(rf"^.* mqtt: connection to 127.0.0.1:{p} lost.*$", agent.log_text(),
                          re.M)
        assert len(lost) == 1 and "warning:" in lost[0], lost
