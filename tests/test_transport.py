"""The transport on this machine: results, errors, quoting, atomic writes, detached jobs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixify.errors import NixifyError, RemoteError
from nixify.transport import (
    CommandFailed,
    Completed,
    DetachedOutcome,
    HostUnreachable,
    LocalTransport,
    SshTransport,
    Transport,
    copy_closure,
    nix_sshopts,
    parse_ssh_url,
)

REPO = Path(__file__).resolve().parent.parent


def test_completed_tail_prefers_stderr_and_joins_the_last_lines() -> None:
    c = Completed("h", "cmd", 1, "out1\nout2\n", "\n".join(f"e{i}" for i in range(10)) + "\n")
    assert not c.ok
    assert c.tail() == "e4 | e5 | e6 | e7 | e8 | e9"
    assert c.tail(2) == "e8 | e9"
    assert Completed("h", "cmd", 0, "a\nb\n", "  \n").tail() == "a | b"
    assert Completed("h", "cmd", 0, "", "").ok


def test_command_failed_names_host_command_code_and_stderr() -> None:
    long = "nix-store --realise " + "/nix/store/x" * 40
    exc = CommandFailed("nas-1", long, 4, "warming up\nerror: path is not valid\n")
    text = str(exc)
    assert text.startswith("nas-1: `nix-store --realise /nix/store/x")
    assert "..." in text and len(text) < 300
    assert "exited 4" in text and "error: path is not valid" in text
    assert isinstance(exc, NixifyError) and isinstance(exc, RemoteError)
    assert exc.host == "nas-1" and exc.rc == 4 and exc.returncode == 4
    down = HostUnreachable("nas-1", "true", "ssh: connect to host 127.0.0.9 port 22: refused")
    assert isinstance(down, CommandFailed)
    assert "nas-1" in str(down) and "did not answer" in str(down) and "refused" in str(down)


def test_local_runs_scripts_and_checks() -> None:
    t = LocalTransport()
    assert isinstance(t, Transport)
    res = t.run("echo out; echo err >&2; exit 3")
    assert (res.rc, res.stdout, res.stderr, res.host) == (3, "out\n", "err\n", "local")
    with pytest.raises(CommandFailed, match=r"local: `echo out.*exited 3: err"):
        t.run("echo out; echo err >&2; exit 3", check=True)
    assert t.run(["cat"], stdin=b"\x00\xffbytes").stdout == "\x00\ufffdbytes"


@pytest.mark.parametrize(
    "word",
    ["two words", "it's", 'say "hi"', "line\nbreak", "$HOME `id` $(id)", "-n", "", "a\\b", "*"],
)
def test_an_argv_is_quoted_once(word: str) -> None:
    res = LocalTransport().run(["printf", "%s", word], check=True)
    assert res.stdout == word


def test_a_timeout_is_host_unreachable_and_kills_the_whole_command() -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=r"no answer within 0\.5s"):
        LocalTransport().run("sleep 30 & sleep 30; wait", timeout=0.5)
    assert time.monotonic() - started < 5


def test_read_and_write_file(tmp_path: Path) -> None:
    t = LocalTransport()
    path = tmp_path / "rec.json"
    assert t.read_file(str(path)) is None
    blob = bytes(range(256)) * 10 + b"\nno newline at end"
    t.write_file(str(path), blob, mode=0o640)
    assert path.read_bytes() == blob and t.read_file(str(path)) == blob
    assert (path.stat().st_mode & 0o7777) == 0o640
    t.write_file(str(path), b"")
    assert t.read_file(str(path)) == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.json"]  # no temporary left
    with pytest.raises(CommandFailed):
        t.write_file(str(tmp_path / "absent-dir" / "f"), b"x")


def test_a_failing_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "record"
    path.write_bytes(b"the old record\n")
    # The write dies half-way (file size limit: cat is stopped by SIGXFSZ).
    code = (
        "import resource, sys\n"
        "from nixify.transport import LocalTransport, CommandFailed\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        f"    LocalTransport().write_file({str(path)!r}, b'new' * 100000)\n"
        "except CommandFailed as exc:\n"
        "    print('failed:', exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed:" in proc.stdout
    assert path.read_bytes() == b"the old record\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record"]


def test_a_detached_job_records_its_own_exit_code(tmp_path: Path) -> None:
    t = LocalTransport(jobs_dir=str(tmp_path / "jobs"))
    t.start_detached("j1", "echo hello; echo oops >&2; exit 7")
    out = t.wait_detached("j1", timeout=20, poll=0.05)
    assert out == DetachedOutcome("local", "j1", 7, "hello\noops\n")
    assert not out.ok
    d = tmp_path / "jobs" / "j1"
    assert (d / "rc").read_text() == "7\n"
    assert sorted(p.name for p in d.iterdir()) == ["log", "pid", "rc", "script", "token"]
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["j1"]


def test_a_job_started_twice_runs_once(tmp_path: Path) -> None:
    t = LocalTransport(jobs_dir=str(tmp_path / "jobs"))
    counter = tmp_path / "count"
    script = f"echo run >> {counter}; sleep 0.3"
    t.start_detached("once", script)
    assert t.detached_outcome("once") is None  # still running
    t.start_detached("once", script)  # the same job again: nothing more runs
    assert t.wait_detached("once", timeout=20, poll=0.05).rc == 0
    t.start_detached("once", script)
    time.sleep(0.3)
    assert counter.read_text() == "run\n"
    with pytest.raises(CommandFailed, match="different script"):
        t.start_detached("once", "echo something else")
    with pytest.raises(CommandFailed, match="no job never"):
        t.detached_outcome("never")
    with pytest.raises(ValueError):
        t.start_detached("../escape", "true")


def test_a_detached_job_survives_its_starter_being_killed(tmp_path: Path) -> None:
    jobs, marker = tmp_path / "jobs", tmp_path / "finished"
    code = (
        "import sys, time\n"
        "from nixify.transport import LocalTransport\n"
        f"t = LocalTransport(jobs_dir={str(jobs)!r})\n"
        f"t.start_detached('survivor', 'sleep 1; echo done > {marker}; echo done; exit 3')\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    starter = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert starter.stdout is not None
    assert starter.stdout.readline().strip() == "started"
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    t = LocalTransport(jobs_dir=str(jobs))
    assert t.detached_outcome("survivor") is None
    out = t.wait_detached("survivor", timeout=20, poll=0.1)
    assert (out.rc, out.log) == (3, "done\n")
    assert marker.read_text() == "done\n"


def test_a_job_whose_runner_died_is_lost_not_running(tmp_path: Path) -> None:
    t = LocalTransport(jobs_dir=str(tmp_path / "jobs"))
    t.start_detached("victim", "sleep 30")
    pid = int((tmp_path / "jobs" / "victim" / "pid").read_text())
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the runner's session: runner and script
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    out = t.detached_outcome("victim")
    assert out is not None and out.rc is None and not out.ok


def test_ssh_arguments_and_nix_copy_command() -> None:
    assert parse_ssh_url("ssh://root@127.0.0.21:2222") == ("root@127.0.0.21", ["-p", "2222"])
    assert parse_ssh_url("builder") == ("builder", [])
    with pytest.raises(ValueError):
        SshTransport("h", ["-p", "22", "-o"])
    argv = SshTransport("h", ["-F", "cfg", "h"]).ssh_argv("true")
    assert argv[:3] == ["ssh", "-F", "cfg"] and argv[-3:] == ["h", "--", "true"]
    assert "BatchMode=yes" in argv and "ControlMaster=auto" in argv
    assert nix_sshopts(["-p", "2222"]) == "NIX_SSHOPTS='-p 2222' "
    with pytest.raises(ValueError):
        nix_sshopts(["-o", "ProxyCommand=a b"])

    class Recorder(LocalTransport):
        def run(self, command, **kw):  # type: ignore[no-untyped-def,override]
            self.seen = command
            return Completed("b", str(command), 0, "", "")

    r = Recorder()
    copy_closure(r, ["/nix/store/abc-x"], "root@127.0.0.11", ssh_options=["-p", "2222"])
    assert r.seen == "NIX_SSHOPTS='-p 2222' nix copy --to ssh://root@127.0.0.11 /nix/store/abc-x"


class _Output:
    def __init__(self, stdout: str, stderr: str) -> None:
        self.stdout_lines = stdout.splitlines()
        self.stderr = stderr


class _PyinfraHost:
    """A pyinfra host stand-in: runs the command it is given with sh, locally, the
    way pyinfra's connector would (stdin written as text lines)."""

    name = "nas-1"

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls: list[dict[str, object]] = []

    def run_shell_command(self, command, print_output=False, **kw):  # type: ignore[no-untyped-def]
        self.calls.append({"print_output": print_output, **kw})
        if self.fail is not None:
            raise self.fail
        stdin = "".join(f"{line}\n" for line in kw.get("_stdin", []))  # type: ignore[attr-defined]
        proc = subprocess.run(["sh", "-c", command.get_raw_value()], input=stdin.encode(),
                              capture_output=True)
        return proc.returncode == 0, _Output(proc.stdout.decode(), proc.stderr.decode())


def test_the_pyinfra_adapter_carries_exit_codes_stdin_and_connection_errors() -> None:
    from nixify.transport import PyinfraTransport

    host = _PyinfraHost()
    t = PyinfraTransport(host)
    res = t.run("echo one; echo two; echo err >&2; exit 4", timeout=30)
    assert (res.host, res.rc, res.stdout, res.stderr) == ("nas-1", 4, "one\ntwo", "err\n")
    assert host.calls[-1] == {"print_output": False, "_timeout": 30}
    assert t.run(["printf", "%s", "a b'c"]).stdout == "a b'c"
    assert t.run("cat", stdin=b"\x00\x01binary\nlines").stdout == "\x00\x01binary\nlines"

    from operations.remote import Remote, quote_argv, run

    got = run(host, "echo hi; exit 2")
    assert isinstance(got, Remote) and (got.rc, got.stdout, got.ok) == (2, "hi", False)
    assert quote_argv(["a b", "c"]) == "'a b' c"

    class SSHException(Exception):  # paramiko's, by name
        pass

    for exc in (EOFError(), SSHException("No existing session"), TimeoutError(),
                ConnectionResetError("reset")):
        with pytest.raises(HostUnreachable, match=r"^nas-1: did not answer"):
            PyinfraTransport(_PyinfraHost(exc)).run("true")
    with pytest.raises(KeyError):
        PyinfraTransport(_PyinfraHost(KeyError("a bug stays a bug"))).run("true")


def test_a_job_script_that_arrives_incomplete_is_never_started(tmp_path: Path) -> None:
    """The operator died while sending the script: a prefix must not run."""
    from nixify.transport.base import start_script

    jobs = tmp_path / "jobs"
    full = f"echo first > {tmp_path}/a\necho second > {tmp_path}/b\n"
    digest = hashlib.sha256(full.encode()).hexdigest()
    proc = subprocess.run(["sh", "-c", start_script(str(jobs), "cut", digest)],
                          input=full[:20].encode(), capture_output=True)
    assert proc.returncode == 94 and b"arrived incomplete" in proc.stderr
    assert not (tmp_path / "a").exists() and not (jobs / "cut").exists()
