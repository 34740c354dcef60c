"""rediss:// checks the server's certificate and hostname (Debian's redis-server with a test CA).

Skips with the reason when redis-server (built with TLS) or openssl is missing; .ci/run installs
redis-server from Debian's packages.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import BrokerUnavailable, Client

from .conftest import FAST

pytestmark = pytest.mark.security

REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if REDIS is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's redis-server (apt-get install redis-server) and openssl for the TLS test")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=taskq test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "1", "-extfile", "san.ext", cwd=d)  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = d / "redis.conf"
    conf.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\n"
        f'tls-ca-cert-file {d}/ca.crt\ntls-auth-clients no\nrequirepass tls-pw\nsave ""\nappendonly no\n'
        f"dir {d}\n"
    )
    proc = subprocess.Popen([REDIS, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip("this redis-server was built without TLS support")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield {"port": port, "ca": str(d / "ca.crt")}
    finally:
        proc.terminate()
        proc.wait(10)


def test_rediss_connects_with_the_right_ca_and_hostname(tls_server: dict[str, Any]) -> None:
    url = f"rediss://:tls-pw@localhost:{tls_server['port']}/0"
    with Client(url, tls_ca_certs=tls_server["ca"], **FAST) as client:
        assert client.ping() > 0
        job = client.submit("anything")
        assert job.status().value == "queued"


def test_rediss_refuses_a_hostname_the_certificate_does_not_name(tls_server: dict[str, Any]) -> None:
    url = f"rediss://:tls-pw@127.0.0.1:{tls_server['port']}/0"
    with Client(url, tls_ca_certs=tls_server["ca"], **FAST) as client, pytest.raises(BrokerUnavailable) as info:
        client.ping()
    assert "tls-pw" not in str(info.value)
    with Client(url, tls_ca_certs=tls_server["ca"], tls_check_hostname=False, **FAST) as client:
        assert client.ping() > 0, "an explicit opt-out connects"


def test_rediss_refuses_an_unknown_ca(tls_server: dict[str, Any]) -> None:
    url = f"rediss://:tls-pw@localhost:{tls_server['port']}/0"
    with Client(url, **FAST) as client, pytest.raises(BrokerUnavailable):
        client.ping()
