"""Helpers for the secrets tests: real keys made at run time, the real sops binary.

No key material is committed: every age identity and SSH key is generated
into the test's tmp dir by ``age-keygen`` / ``ssh-keygen``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOPS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sops"


@dataclass(frozen=True)
class AgeKey:
    identity_file: Path
    recipient: str


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: Path

    @property
    def public_line(self) -> str:
        return self.public.read_text().strip()


def age_keygen(path: Path) -> AgeKey:
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    rcpt = subprocess.run(
        ["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return AgeKey(path, rcpt)


def ssh_keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> SshKey:
    args = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)]
    if kind == "rsa":
        args[4:4] = ["-b", "2048"]
    subprocess.run(args, check=True, capture_output=True)
    return SshKey(path, path.with_name(path.name + ".pub"))


def clean_env(home: Path) -> dict[str, str]:
    """An environment with no sops identity of the machine's user leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["HOME"] = str(home)
    env.pop("XDG_CONFIG_HOME", None)
    return env


def sops(
    args: list[str],
    home: Path,
    key_file: Path | None = None,
    cwd: Path | None = None,
    check: bool = True,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = clean_env(home)
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    env.update(extra_env or {})
    proc = subprocess.run([str(SOPS), *args], capture_output=True, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"sops {args} failed: {proc.stderr.decode()}")
    return proc


SAMPLE_YAML = """\
# database credentials
db:
  user: admin # inline note
  password: "s3cr3t value"
  port: 5432
  ratio: 1.50
  on: true
  created: 2001-12-14
  token_unencrypted: visible
# a list with nesting
items:
  - one
  - 2
  - nested: x
    other: y
  - - a
    - b
  - |
    block
    text
empty: ""
nothing:
colon: "a: b"
hash: "a #b"
lead: " x"
oct: "0123"
uni: "é ü"
tab: "a\\tb"
multi: |
  line1
  line2
strip: |-
  no newline
# trailing comment
"""

SAMPLE_JSON = """{"a": "x", "b": {"c": 1, "d": [1, 2.5, true, "s", null]},
 "h": "<a&b>", "n": [1e21, 1e-7, 100, -0.0], "e": {}, "l": []}
"""
