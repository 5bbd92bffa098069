"""A real kube-apiserver + etcd on loopback for integration tests and benchmarks.

`TestCluster.start(workdir)` runs etcd and kube-apiserver (the binaries `hack/test-apiserver.sh`
builds and caches) on free 127.0.0.1 ports, the way controller-runtime's envtest does: a
throw-away CA, an admin client certificate in `system:masters`, RBAC authorization and a
service-account signing key so the TokenRequest API works. There is no controller-manager and
no scheduler: Pods stay Pending, namespaces never finish terminating, and nothing creates a
namespace's `default` ServiceAccount (which is why the ServiceAccount admission plugin is off).

This module deliberately does not import pytest: benchmark scripts use it too.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import http.client
import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config
from kubernetes.dynamic import DynamicClient

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES_SCRIPT = REPO_ROOT / "hack" / "test-apiserver.sh"
CRD_DIR = Path(__file__).resolve().parent / "crds"
KIDECAR_RBAC = REPO_ROOT / "deploy" / "base" / "rbac.yaml"
GAME_GROUP = "game.kruise.io"
GAME_VERSION = "v1alpha1"

# Plugins that need a controller this cluster does not run. ServiceAccount admission rejects
# every Pod whose ServiceAccount does not exist yet, and the `default` ServiceAccount of a new
# namespace is created by kube-controller-manager, so without this no Pod could be created.
DISABLED_ADMISSION_PLUGINS = ("ServiceAccount",)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Long enough for any benchmark run; the API server's default maximum is unlimited.
TOKEN_EXPIRATION_SECONDS = 7 * 24 * 3600
CERT_VALIDITY = datetime.timedelta(days=30)
LOG_TAIL_LINES = 40

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# Audit policy of `TestCluster(audit=True)`: one event per write request (at ResponseComplete),
# none for reads and watches. GameServer and Pod writes carry the request and the resulting
# object (who set which opsState, and when); other writes only who/what/when. The API server's
# own bookkeeping (its leases and the like) is left out.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:apiserver"]},
        {"level": "None", "resources": [{"group": "coordination.k8s.io"}]},
        {
            "level": "RequestResponse",
            "verbs": list(WRITE_VERBS),
            "resources": [{"group": "game.kruise.io"}, {"group": "", "resources": ["pods"]}],
        },
        {"level": "Metadata", "verbs": list(WRITE_VERBS)},
        {"level": "None"},
    ],
}


class ClusterUnavailableError(RuntimeError):
    """The test cluster could not be obtained; the message says why and how to fix it."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the server binaries the cluster runs."""

    kube_apiserver: Path
    etcd: Path


@dataclass(frozen=True)
class GameServerPair:
    """A Pod and its GameServer (same name and namespace, as OKG creates them)."""

    namespace: str
    name: str
    pod: dict[str, Any]
    gameserver: dict[str, Any]


GameServerFactory = Callable[..., GameServerPair]
"""Type of the `make_game_server` fixture: `(name, **create_game_server options) -> pair`."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a (log) file, or a note when it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def run_build_script(script: Path, build_log: Path) -> tuple[int, dict[str, str]]:
    """Run one of the `hack/` scripts that build (once) or find what the tests need, under the
    test cache's exclusive build lock, so that parallel test sessions never run two cold builds
    into the same directory. Its stderr (build progress) goes to `build_log`; it prints what it
    found as `NAME=value` lines. Returns its exit code and those lines as a mapping."""
    cache = Path(os.environ.get("KIDECAR_TEST_CACHE", Path.home() / ".cache" / "kidecar-test"))
    cache.mkdir(parents=True, exist_ok=True)
    build_log.parent.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock, open(build_log, "w") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            ["bash", str(script)], stdout=subprocess.PIPE, stderr=log, text=True, check=False
        )
    printed = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", result.stdout, re.MULTILINE))
    return result.returncode, printed


def locate_binaries(workdir: Path) -> Binaries:
    """Find kube-apiserver and etcd through `hack/test-apiserver.sh`, building them if missing.

    The script is the single place that knows the Kubernetes version, the cache directory and
    where etcd lives; once the binary is cached it only prints the paths. An exclusive lock
    keeps parallel test sessions from running two cold builds into the same directory. The
    script's stderr (build progress) goes to `workdir/test-apiserver.log`.
    """
    build_log = workdir / "test-apiserver.log"
    returncode, printed = run_build_script(BINARIES_SCRIPT, build_log)
    paths = {k: v for k, v in printed.items() if k in ("KUBE_APISERVER", "ETCD") and v}
    if returncode != 0 or set(paths) != {"KUBE_APISERVER", "ETCD"}:
        raise ClusterUnavailableError(
            f"{BINARIES_SCRIPT.relative_to(REPO_ROOT)} failed (exit {returncode}), so there "
            "is no kube-apiserver/etcd for the integration tests. Its log ends with:\n"
            f"{tail(build_log)}\n"
            "How to fix: run `hack/test-apiserver.sh` by hand and fix what it reports. Usually "
            "`go` is not on PATH or the Go module proxy is unreachable (needed once, for the "
            "first build: several minutes), or there is no etcd (KIDECAR_ETCD=/path/to/etcd)."
        )
    return Binaries(kube_apiserver=Path(paths["KUBE_APISERVER"]), etcd=Path(paths["ETCD"]))


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: Iterable[x509.GeneralName] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    names = list(server_names)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_serving_cert(directory: Path, names: Iterable[str] = ("localhost",)) -> Path:
    """Write a self-signed serving certificate for `names` (DNS names and IP addresses; plus
    127.0.0.1) as `directory/tls.crt` and its key as `directory/tls.key`, the file names
    controller-runtime's webhook server reads; return `directory`. For servers nothing calls
    but that refuse to start without a certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kidecar-test-serving")])
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = _issue(name, key, name, key, server_names=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(_pem(key))
    (directory / "tls.key").chmod(0o600)
    return directory


@dataclass(frozen=True)
class Pki:
    """Files of the throw-away PKI (EC P-256 keys: generated in microseconds, unlike RSA)."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        """Write a CA, a serving cert for 127.0.0.1/localhost, an admin client cert
        (`O=system:masters`) and the service-account signing key pair into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kidecar-test-ca")])
        ca_cert = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)

        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving_cert = _issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            serving_key,
            ca_name,
            ca_key,
            server_names=[
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            ],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        admin_key = ec.generate_private_key(ec.SECP256R1())
        admin_cert = _issue(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "kidecar-test-admin"),
                ]
            ),
            admin_key,
            ca_name,
            ca_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        sa_key = ec.generate_private_key(ec.SECP256R1())

        pki = cls(
            ca_cert=directory / "ca.crt",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_public_key=directory / "sa.pub",
            sa_private_key=directory / "sa.key",
        )
        pem = serialization.Encoding.PEM
        pki.ca_cert.write_bytes(ca_cert.public_bytes(pem))
        pki.serving_cert.write_bytes(serving_cert.public_bytes(pem))
        pki.serving_key.write_bytes(_pem(serving_key))
        pki.admin_cert.write_bytes(admin_cert.public_bytes(pem))
        pki.admin_key.write_bytes(_pem(admin_key))
        pki.sa_public_key.write_bytes(
            sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        pki.sa_private_key.write_bytes(_pem(sa_key))
        return pki


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    user: Mapping[str, str],
    ca_file: Path | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a one-context kubeconfig and return `path`.

    `user` holds the credentials, e.g. `token`, or `client-certificate` and `client-key`.
    """
    cluster: dict[str, str] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    context: dict[str, str] = {"cluster": "test", "user": "test"}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "test", "user": dict(user)}],
        "contexts": [{"name": "test", "context": context}],
        "current-context": "test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def api_client_from_kubeconfig(path: Path) -> k8s.ApiClient:
    """A new `ApiClient` for the kubeconfig at `path` (the caller closes it, e.g. `with`)."""
    api: k8s.ApiClient = new_client_from_config(config_file=str(path), persist_config=False)
    return api


def load_yaml_documents(
    path_or_docs: Path | str | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Objects of a YAML file, or copies of already-parsed documents; empty ones dropped."""
    if isinstance(path_or_docs, (str, Path)):
        with open(path_or_docs) as f:
            docs: Iterable[Any] = list(yaml.safe_load_all(f))
    else:
        docs = path_or_docs
    return [dict(doc) for doc in docs if doc]


# Runs the server as a job of a small shell that holds the read end of a pipe from this
# process (fd 3). If this process dies in any way (SIGKILL and `timeout`'s SIGTERM included,
# where atexit handlers never run), the pipe reaches EOF and the shell kills the server, so
# nothing is orphaned. A SIGTERM to the shell is passed on, and the shell exits only after
# the server has, so waiting for the shell means waiting for the server.
_LIFELINE = """
exec 3<&0 </dev/null
"$@" 3<&- &
server=$!
trap 'kill -TERM "$server"; wait "$server"; exit' TERM
{ read -r _ <&3; kill -KILL "$server"; } &
wait "$server"
"""


class _Process:
    """A server process in its own session (process group) with its output in a log file,
    killed when this Python process goes away (see `_LIFELINE`)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                ["bash", "-c", _LIFELINE, name, *argv],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop the server and reap it. `graceful`: SIGTERM first and give it `timeout` to
        exit. Then (or at once) close the lifeline, which SIGKILLs the server; SIGKILL the
        whole process group if even that has not ended it within `timeout`."""
        if graceful:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


ServerProcess = _Process
"""Public name of the lifeline-guarded server process, for other test servers (OKG's manager)."""


class TestCluster:
    """etcd + kube-apiserver on loopback; see the module docstring.

    Attributes: `server` (https URL), `port`, `ca_file`, `admin_kubeconfig`, `workdir`,
    `binaries`, `etcd_url`. Logs: `workdir/etcd.log` and `workdir/kube-apiserver.log`.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, workdir: Path, binaries: Binaries, *, audit: bool = False) -> None:
        """Prepare files and ports; `start()` is the usual entry point.

        `audit`: write an audit log of every write request (see `AUDIT_POLICY`) to
        `workdir/audit.log`; read it with `tests.support.audit.AuditLog(cluster.audit_log)`.
        """
        self.workdir = workdir
        self.binaries = binaries
        self.audit_log: Path | None = workdir / "audit.log" if audit else None
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self.etcd_peer_url = f"http://127.0.0.1:{free_port()}"
        self.pki = Pki.create(workdir / "pki")
        self.ca_file = self.pki.ca_cert
        self.admin_kubeconfig = write_kubeconfig(
            workdir / "kubeconfigs" / "admin.yaml",
            server=self.server,
            ca_file=self.ca_file,
            user={
                "client-certificate": str(self.pki.admin_cert),
                "client-key": str(self.pki.admin_key),
            },
        )
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None

    @classmethod
    def start(
        cls,
        workdir: Path | str,
        *,
        binaries: Binaries | None = None,
        ready_timeout: float = 60.0,
        audit: bool = False,
    ) -> TestCluster:
        """Locate (or build) the binaries, start etcd and kube-apiserver, wait until ready.

        `audit=True` turns the API server's audit log on (see `__init__`). Raises
        `ClusterUnavailableError` with the reason and the fix. Everything started is stopped
        again by `stop()`, or at interpreter exit at the latest.
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = cls(workdir, binaries or locate_binaries(workdir), audit=audit)
        atexit.register(cluster.stop)
        try:
            cluster._start_etcd(ready_timeout)
            cluster.start_apiserver(ready_timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> TestCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- processes -----------------------------------------------------------------------

    def _start_etcd(self, timeout: float) -> None:
        data_dir = self.workdir / "etcd-data"
        self._etcd = _Process(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={self.etcd_peer_url}",
                f"--initial-advertise-peer-urls={self.etcd_peer_url}",
                f"--initial-cluster=default={self.etcd_peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        host, port = self.etcd_url.removeprefix("http://").split(":")
        self._wait(
            self._etcd,
            lambda: _http_ok(http.client.HTTPConnection(host, int(port), timeout=2)),
            timeout,
        )

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            f"--disable-admission-plugins={','.join(DISABLED_ADMISSION_PLUGINS)}",
            # The `kubernetes` Service cannot point at a loopback address; without this the
            # server logs a failed Endpoints update every few seconds.
            "--endpoint-reconciler-type=none",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_log is None:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            # Each request's line is written as the request completes, not batched: it is in
            # the file moments after the client has its answer.
            "--audit-log-mode=blocking",
        ]

    def start_apiserver(self, ready_timeout: float = 60.0) -> None:
        """(Re)start kube-apiserver on the same port against the same etcd; wait for /readyz."""
        if self._apiserver is not None and self._apiserver.running():
            raise RuntimeError("kube-apiserver is already running")
        self._apiserver = _Process(
            "kube-apiserver", self._apiserver_argv(), self.workdir / "kube-apiserver.log"
        )
        self._wait(self._apiserver, self._apiserver_ready, ready_timeout)

    def stop_apiserver(self) -> None:
        """Kill kube-apiserver at once, like a crash or a cut network: open connections
        (watches included) are reset and new ones refused until `start_apiserver()`. etcd
        keeps the data. SIGKILL, because a graceful SIGTERM makes the server wait up to 60 s
        for open watches to end before it exits."""
        if self._apiserver is not None:
            self._apiserver.stop(graceful=False)
            self._apiserver = None

    def process_ids(self) -> dict[str, int]:
        """PIDs of the running servers (``kube-apiserver``, ``etcd``), for CPU accounting."""
        pids = {}
        for name, process in (("kube-apiserver", self._apiserver), ("etcd", self._etcd)):
            if process is not None and process.running():
                shell = psutil.Process(process.popen.pid)
                server = next((c for c in shell.children() if c.name() == name), None)
                if server is not None:
                    pids[name] = server.pid
        return pids

    def get_as_admin(self, path: str) -> str:
        """GET ``path`` (e.g. ``/metrics``) from kube-apiserver as the admin; the body."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=10, context=self._admin_ssl_context()
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}: {body[:200]}")
            return body
        finally:
            connection.close()

    @property
    def apiserver_running(self) -> bool:
        """Whether the kube-apiserver process is alive."""
        return self._apiserver is not None and self._apiserver.running()

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd. Idempotent; also registered with `atexit`."""
        self.stop_apiserver()
        if self._etcd is not None:
            self._etcd.stop()
            self._etcd = None
        atexit.unregister(self.stop)

    def _admin_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.pki.admin_cert, self.pki.admin_key)
        return context

    def _apiserver_ready(self) -> bool:
        return _http_ok(
            http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=2, context=self._admin_ssl_context()
            ),
            "/readyz",
        )

    def _wait(self, process: _Process, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not process.running():
                raise ClusterUnavailableError(
                    f"{process.name} exited with code {process.popen.returncode} while starting. "
                    f"Last lines of {process.log_path}:\n{tail(process.log_path)}"
                )
            if time.monotonic() > deadline:
                process.stop()
                raise ClusterUnavailableError(
                    f"{process.name} was not ready after {timeout:.0f}s. "
                    f"Last lines of {process.log_path}:\n{tail(process.log_path)}"
                )
            time.sleep(0.1)

    # -- clients and objects -------------------------------------------------------------

    def admin_api_client(self) -> k8s.ApiClient:
        """A new admin (`system:masters`) `ApiClient`; close it (use it with `with`)."""
        return api_client_from_kubeconfig(self.admin_kubeconfig)

    def _dynamic(self, api: k8s.ApiClient) -> DynamicClient:
        # Keep the discovery cache in the workdir instead of a shared file in /tmp named
        # after the host:port, which a later cluster on the same port would read stale.
        return DynamicClient(api, cache_file=str(self.workdir / "discovery-cache.json"))

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create namespace `name` (existing is fine) and return its name."""
        body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels or {})))
        with self.admin_api_client() as api:
            try:
                k8s.CoreV1Api(api).create_namespace(body)
            except ApiException as e:
                if e.status != 409:
                    raise
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting: with no namespace controller it stays
        Terminating (its objects remain in etcd), but nothing new can be created in it."""
        with self.admin_api_client() as api:
            try:
                k8s.CoreV1Api(api).delete_namespace(name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def apply_yaml(
        self,
        path_or_docs: Path | str | Iterable[Mapping[str, Any]],
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Server-side apply every object of a YAML file (or parsed documents) as admin.

        Works for any kind the server knows, custom resources included. Namespaced objects go
        to `namespace` (like `kubectl apply -n`); an object naming a different namespace is an
        error. Returns the applied objects as the server stored them.
        """
        applied: list[dict[str, Any]] = []
        with self.admin_api_client() as api:
            dynamic = self._dynamic(api)
            for doc in load_yaml_documents(path_or_docs):
                resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                metadata = dict(doc.get("metadata") or {})
                if resource.namespaced:
                    target = namespace or metadata.get("namespace")
                    if target is None or metadata.get("namespace", target) != target:
                        raise ValueError(
                            f"{doc['kind']}/{metadata.get('name')}: namespace "
                            f"{metadata.get('namespace')!r} conflicts with {namespace!r} "
                            "or is missing"
                        )
                    metadata["namespace"] = target
                result = dynamic.server_side_apply(
                    resource,
                    body={**doc, "metadata": metadata},
                    field_manager="kidecar-tests",
                    force_conflicts=True,
                )
                applied.append(result.to_dict())
        return applied

    def install_crds(self, paths: Iterable[Path] | None = None, timeout: float = 30.0) -> None:
        """Apply CRD files (default: the test GameServer/GameServerSet CRDs, `crds/*.yaml`, and
        the OpenKruise ones of `crds/kruise/`) and wait until they are Established and their
        resources answer a list request (i.e. servable, not just registered)."""
        default = [*sorted(CRD_DIR.glob("*.yaml")), *sorted((CRD_DIR / "kruise").glob("*.yaml"))]
        files = default if paths is None else list(paths)
        crds = [crd for path in files for crd in self.apply_yaml(path)]
        deadline = time.monotonic() + timeout
        with self.admin_api_client() as api:
            extensions = k8s.ApiextensionsV1Api(api)
            custom = k8s.CustomObjectsApi(api)
            for crd in crds:
                name = crd["metadata"]["name"]
                while not _crd_servable(extensions, custom, name, crd["spec"]):
                    if time.monotonic() > deadline:
                        status = extensions.read_custom_resource_definition(name).status
                        raise ClusterUnavailableError(
                            f"CRD {name} not servable after {timeout:.0f}s; status: {status}. "
                            "Last lines of the apiserver log:\n"
                            f"{tail(self.workdir / 'kube-apiserver.log')}"
                        )
                    time.sleep(0.1)

    def serviceaccount_token(
        self, namespace: str, name: str, expiration_seconds: int = TOKEN_EXPIRATION_SECONDS
    ) -> str:
        """A bearer token for ServiceAccount `namespace/name` from the TokenRequest API."""
        body = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        with self.admin_api_client() as api:
            response = k8s.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, body
            )
        token = response.status.token if response.status is not None else None
        if not token:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
        return token

    def serviceaccount_kubeconfig(self, namespace: str, name: str) -> Path:
        """Write a kubeconfig that authenticates as ServiceAccount `namespace/name` with a
        TokenRequest bearer token (default namespace: `namespace`); return its path."""
        return write_kubeconfig(
            self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.yaml",
            server=self.server,
            ca_file=self.ca_file,
            user={"token": self.serviceaccount_token(namespace, name)},
            namespace=namespace,
        )

    def create_game_server(
        self,
        namespace: str,
        name: str,
        *,
        gameserver_spec: Mapping[str, Any] | None = None,
        pod_labels: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        service_account: str | None = None,
    ) -> GameServerPair:
        """Create a Pod and its GameServer named `name` as OKG would (the GameServer is owned by
        the Pod). The Pod stays Pending: nothing schedules it. `gameserver_spec` defaults to
        `{"opsState": "None"}`."""
        pod_spec: dict[str, Any] = {
            "containers": [{"name": "game", "image": "registry.invalid/kidecar-test/game:1"}],
        }
        if service_account is not None:
            pod_spec["serviceAccountName"] = service_account
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": dict(pod_labels or {}),
                "annotations": dict(pod_annotations or {}),
            },
            "spec": pod_spec,
        }
        with self.admin_api_client() as api:
            dynamic = self._dynamic(api)
            created_pod = dynamic.resources.get(api_version="v1", kind="Pod").create(
                body=pod, namespace=namespace
            )
            gameserver = {
                "apiVersion": f"{GAME_GROUP}/{GAME_VERSION}",
                "kind": "GameServer",
                "metadata": {
                    "name": name,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": name,
                            "uid": created_pod.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": dict(
                    gameserver_spec if gameserver_spec is not None else {"opsState": "None"}
                ),
            }
            created_gs = dynamic.resources.get(
                api_version=f"{GAME_GROUP}/{GAME_VERSION}", kind="GameServer"
            ).create(body=gameserver, namespace=namespace)
        return GameServerPair(namespace, name, created_pod.to_dict(), created_gs.to_dict())


def _http_ok(connection: http.client.HTTPConnection, path: str = "/health") -> bool:
    """GET `path`; True on 200, False on any error or other status. Closes the connection."""
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _crd_servable(
    extensions: k8s.ApiextensionsV1Api,
    custom: k8s.CustomObjectsApi,
    name: str,
    spec: Mapping[str, Any],
) -> bool:
    """Whether CRD `name` is Established and its resource answers a list request."""
    status = extensions.read_custom_resource_definition(name).status
    conditions = (status.conditions if status is not None else None) or []
    if not any(c.type == "Established" and c.status == "True" for c in conditions):
        return False
    try:
        custom.list_cluster_custom_object(
            spec["group"], spec["versions"][0]["name"], spec["names"]["plural"], limit=1
        )
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True
