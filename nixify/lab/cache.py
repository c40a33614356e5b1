"""A binary cache for the lab: served from a lab host, every host enrolled.

``setup_lab_cache`` (``nixify cache lab-setup``):

1. the signing key: kept if ``<lab>/secrets/builders/cache-signing-key.yaml``
   already holds one, else made by Nix and sops-encrypted to the recipients
   ``.sops.yaml`` names for that file (the operator and the builders);
2. the server: ``nixify/cache/server.py`` started over SSH on the serving host
   (inside its namespace, on its own 127.0.0.x address), cache directory
   ``/var/lib/nixify/cache`` in that host's own ``/var/lib/nixify``;
3. every host's ``/etc/nix/nixify-cache.conf`` (included by its ``nix.conf``):
   the cache as substituter, its public key trusted, ``require-sigs = true``;
4. ``<lab>/cache.yaml``, which deploys and ``nixify cache warm`` read.
"""

from __future__ import annotations

import hashlib
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nixify.cache import server as cache_server
from nixify.cache.config import CONFIG_NAME, NIX_CONF_INCLUDE, CacheConfig
from nixify.cache.keys import (
    DEFAULT_SECRET,
    SigningKey,
    generate_signing_key,
    load_signing_key,
    recipients_for,
    write_key_secret,
)
from nixify.errors import ConfigError, NixifyError
from nixify.lab.control import provision_lab
from nixify.lab.secrets import LAB_OPERATOR_IDENTITY
from nixify.lab.state import LabHostState, LabState
from nixify.secrets.keys import identities_from_file
from nixify.secrets.sopsfile import SopsFile
from nixify.transport import HostUnreachable, SshTransport

CACHE_DIR = "/var/lib/nixify/cache"
SERVER_LOG = "/var/lib/nixify/cache-server.log"
SERVER_PID = "/var/lib/nixify/cache-server.pid"
SERVER_BIN = "/var/lib/nixify/bin/cache_server.py"
DEFAULT_PORT = 5080
DEFAULT_KEY_NAME = "nixify-lab-cache-1"


def _ssh(state: LabState, host: str, script: str, timeout: float = 60) -> str:
    try:
        res = SshTransport(host, state.ssh_args(host)).run(script, timeout=timeout)
    except HostUnreachable as exc:
        raise NixifyError(f"lab cache: {exc}") from None
    if not res.ok:
        raise NixifyError(f"lab cache: {host}: exited {res.rc}: {res.stderr.strip()}")
    return res.stdout


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.3):
            return True
    except OSError:
        return False


def default_server_host(state: LabState) -> LabHostState:
    """A NAS serves the cache (storage host); else the first host that is not a builder."""
    for role in ("nas", "operator"):
        for h in state.hosts:
            if h.role == role:
                return h
    others = [h for h in state.hosts if h.role not in ("remote_builder", "cloud_builder")]
    if not others:
        raise ConfigError(f"lab {state.dir}: no host to serve the cache from")
    return others[0]


def start_server(state: LabState, host: LabHostState, port: int) -> str:
    """Serve the host's cache directory over HTTP on its own address; the URL."""
    url = f"http://{host.address}:{port}"
    if _answers(host.address, port):
        return url
    # stdlib only: shipped to the host over SSH and run by the host's python3 (a host
    # sees nothing of the operator's checkout)
    source = Path(cache_server.__file__).read_text()
    server = f"{SERVER_BIN}.{hashlib.sha256(source.encode()).hexdigest()[:12]}"
    script = (
        f"mkdir -p {CACHE_DIR} {shlex.quote(str(Path(server).parent))}; "
        f"printf %s {shlex.quote(source)} > {server}.tmp && mv -f {server}.tmp {server}; "
        f"setsid python3 {shlex.quote(server)} "
        f"--dir {CACHE_DIR} --address {shlex.quote(host.address)} --port {port} "
        f">{SERVER_LOG} 2>&1 </dev/null & echo $! > {SERVER_PID}"
    )
    _ssh(state, host.name, script)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(host.address, port):
            return url
        time.sleep(0.05)
    raise NixifyError(f"lab cache: the server on {host.name} did not answer on {url}")


def stop_server(state: LabState, host: str) -> None:
    """Stop the cache server on ``host`` by the pid it recorded (never by name)."""
    _ssh(
        state,
        host,
        f"if [ -s {SERVER_PID} ]; then kill $(cat {SERVER_PID}) 2>/dev/null; rm -f {SERVER_PID}; "
        "fi; true",
    )


def ensure_key(secrets_dir: Path, relpath: str, identity_file: Path, name: str) -> SigningKey:
    """The lab's signing key: the one in the sops file, or a new one written there."""
    path = secrets_dir / relpath
    ids = [i.identity for i in identities_from_file(identity_file)]
    # A file that will not decrypt is an error, never overwritten; only the
    # provisioner's placeholder (no ``secret_key`` field) is replaced.
    if path.exists() and SopsFile.load(path).decrypt(ids).get("secret_key") is not None:
        return load_signing_key(path, ids)
    key = generate_signing_key(name)
    write_key_secret(path, key, recipients_for(secrets_dir, relpath))
    return key


def enrol(state: LabState, config: CacheConfig, hosts: list[str] | None = None) -> None:
    """Write every host's ``/etc/nix/nixify-cache.conf`` over SSH (atomically)."""
    text = config.nix_conf()
    target = f"/etc/nix/{NIX_CONF_INCLUDE}"
    script = (
        f"printf %s {shlex.quote(text)} > {target}.tmp && mv {target}.tmp {target} && "
        "nix show-config | grep -q '^require-sigs = true'"
    )
    names = hosts if hosts is not None else [h.name for h in state.hosts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: _ssh(state, n, script), names))


def setup_lab_cache(
    lab_dir: Path,
    server_host: str | None = None,
    port: int = DEFAULT_PORT,
    key_name: str = DEFAULT_KEY_NAME,
) -> CacheConfig:
    state = LabState.load(lab_dir)
    if state is None:
        raise ConfigError(f"no lab in {lab_dir}: run `nixify lab up` first")
    secrets_dir = lab_dir / "secrets"
    if not (secrets_dir / ".sops.yaml").is_file():
        provision_lab(lab_dir)
    key = ensure_key(secrets_dir, DEFAULT_SECRET, lab_dir / LAB_OPERATOR_IDENTITY, key_name)
    host = state.host(server_host) if server_host else default_server_host(state)
    url = start_server(state, host, port)
    config = CacheConfig(url, (key.public,), signing_key=DEFAULT_SECRET, server_host=host.name)
    enrol(state, config)
    config.save(lab_dir / CONFIG_NAME)
    return config
