"""Test PKI and a configurable mosquitto for the MQTT production tests.

make_pki(dir) creates, with the `openssl` CLI, two independent CAs and the
certificates the TLS tests need; MosquittoConf is a mosquitto that runs the
listeners a test asks for (plain, TLS, mutual TLS, password) from its own
mosquitto.conf, registered with the test's ProcRegistry so that teardown
stops it by PID.
"""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import MOSQUITTO, Proc, port_open, wait_for

OPENSSL = "openssl"


def _ssl(*args, cwd):
    r = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{r.stderr}")


def _ca(d, name):
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN=mbgate test {name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return crt, key


def _leaf(d, name, ca, cn, san=None, client=False):
    key, csr, crt, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt",
                          d / f"{name}.ext")
    _ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={cn}", cwd=d)
    lines = ["basicConstraints=CA:FALSE",
             "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
    if san:
        lines.append("subjectAltName=" + san)
    ext.write_text("\n".join(lines) + "\n")
    _ssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
         "-out", crt, "-days", "2", "-extfile", ext, cwd=d)
    return crt, key


class Pki:
    """Files of a throw-away PKI:
    ca / other_ca        two unrelated CAs (.crt)
    ca_dir               a hashed directory holding ca (for tls.ca_path)
    server               CN/SAN localhost + IP 127.0.0.1, signed by ca
    wrong_server         CN/SAN wrong.example, signed by ca
    client               a client certificate signed by ca"""


def make_pki(directory):
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    p = Pki()
    ca = _ca(d, "ca")
    p.ca = ca[0]
    # the same CA as an OpenSSL hashed directory (tls.ca_path)
    p.ca_dir = d / "ca-dir"
    p.ca_dir.mkdir(exist_ok=True)
    (p.ca_dir / "test-ca.pem").write_bytes(Path(p.ca).read_bytes())
    _ssl("rehash", p.ca_dir, cwd=d)
    p.other_ca = _ca(d, "other-ca")[0]
    p.server, p.server_key = _leaf(d, "server", ca, "localhost",
                                   "DNS:localhost,IP:127.0.0.1")
    p.wrong_server, p.wrong_server_key = _leaf(d, "wrong-server", ca, "wrong.example",
                                               "DNS:wrong.example")
    p.client, p.client_key = _leaf(d, "client", ca, "itest-client", client=True)
    return p


class MosquittoConf(Proc):
    """mosquitto from its own mosquitto.conf: listeners is a list of config
    line lists, each starting with "listener PORT 127.0.0.1" (see
    plain_listener, tls_listener); global_lines go before them.
    per_listener_settings is false, so authentication settings
    (allow_anonymous, password_file, acl_file) apply to every listener.
    Stopped by PID like every Proc."""

    def __init__(self, registry, tmp_path, listeners, global_lines=(), name=None,
                 unlimited_queue=True):
        self.listeners = listeners
        self.ports = [int(ls[0].split()[1]) for ls in listeners]
        name = name or f"mosquitto-{self.ports[0]}"
        self.conf = Path(tmp_path) / f"{name}.conf"
        lines = ["per_listener_settings false", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type information", "connection_messages true", "log_timestamp true",
                 *global_lines]
        if unlimited_queue:
            # as in conftest.Broker: a slow test subscriber loses nothing.
            # (mosquitto 2.0.11 with this setting disconnects an MQTT 5
            # client whose PUBLISH its ACL denies, instead of answering 0x87)
            lines.append("max_queued_messages 0")
        if os.geteuid() == 0:
            # as root mosquitto would switch to user mosquitto before reading
            # the keys and password file, which live below pytest's 0700 tmp
            lines.insert(0, "user root")
        for ls in listeners:
            lines.extend(ls)
        self.conf.write_text("\n".join(lines) + "\n")
        super().__init__(registry, name, [MOSQUITTO, "-c", self.conf],
                         Path(tmp_path) / f"{name}.log")

    def start(self, timeout=10.0):
        self._spawn()
        wait_for(lambda: all(port_open(p) for p in self.ports) or not self.running(),
                 timeout, f"mosquitto to listen on {self.ports}")
        if not self.running():
            pytest.fail(f"mosquitto exited\n{self.diag()}", pytrace=False)
        return self

    def stop(self, timeout=10.0):
        return self.terminate(timeout)


def tls_listener(port, pki, cert="server", require_certificate=False):
    """Config lines of a TLS listener on 127.0.0.1:port serving pki's server
    certificate (cert="server") or the wrong-name one (cert="wrong_server")."""
    lines = [f"listener {port} 127.0.0.1",
             f"cafile {pki.ca}",
             f"certfile {getattr(pki, cert)}",
             f"keyfile {getattr(pki, cert + '_key')}",
             "tls_version tlsv1.2"]
    if require_certificate:
        lines.append("require_certificate true")
    return lines


def plain_listener(port):
    return [f"listener {port} 127.0.0.1"]


