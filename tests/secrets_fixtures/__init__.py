"""Helpers for the secrets tests: real keys made at run time, the real sops binary.

No key material is committed: every age identity and SSH key is generated
into the test's tmp dir by ``age-keygen`` / ``ssh-keygen``.
"""

from __future__ import annotations

import json
import os
import random
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
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the real sops. With ``timeout``, a run that does not end in time is killed
    and reported as a failure (exit code -9, "timed out" on stderr)."""
    env = clean_env(home)
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    env.update(extra_env or {})
    try:
        proc = subprocess.run(
            [str(SOPS), *args], capture_output=True, env=env, cwd=cwd, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess([str(SOPS), *args], -9, b"", b"sops timed out")
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


# Strings that exercise go-yaml's quoting and escaping rules, one value each.
_SPECIAL_STRINGS = [
    "~", "null", "1e3", "0x1F", ".5", "+1", "1_000", "-", "?", "- x", "@x", "`x", "|", ">",
    "!", "&a", "*a", "%x", "'q'", '"dq"', "x ", "x\n", "x\n\n", "\nx", "a\tb", "\u00e9\U0001f600",
    "\x01z", "true", "False", "0o17", "0b11", "1.0", "-.inf", ".NaN",
    "2001-12-14T21:59:43.10-05:00", "12:30:45", "1:20", "0123", "08", "-0", "+.5e3", "a #b",
    "a# b", "a:b", "http://x.y/z?q=1", "[x]", "{y}", "x,y", "x]", "#x", "x:", " x", "x  y",
    "multi\nline\nno end", "trail \nspace", "a'b", "\\\\back",
]  # fmt: skip

# Documents that exercise go-yaml's quoting, escaping, number and comment rules.
CORPUS: dict[str, str] = {
    "keys": 'yes: 1\n"123": a\n"null": b\n"a b": c\n"k: x": d\n"~": e\n',
    "specials": "".join(
        f"v{i}: {json.dumps(v, ensure_ascii=False)}\n" for i, v in enumerate(_SPECIAL_STRINGS)
    ),
    "longline": "k: " + " ".join(["lorem"] * 30) + "\n",
    "nested_comments": (
        "# head\na:\n  # inside a\n  b: 1\n  # foot of a\nc:\n  - 1\n  # between items\n"
        "  - 2\n  # end of list\n# end\n"
    ),
    "docstart": "---\na: 1\n",
    "comment_placement": (
        "a: 1\n  # indented after a scalar\nb:\n  c:\n    d: 1\n  # dedented foot\ne: # on key\n"
        "  f: 1\nl:\n  # before first\n  - x: 1\n    # inside item\n    y: 2\n  - 1 # one\n"
        "  - # before nested\n    - a\n\n# spaced\n\n# x\n# y\n"
    ),
    "empty_things": "a: {}\nb: []\nc:\n  - {}\n  - []\n  - - - deep\nd: ''\n",
    "blank_lines": "a: 1\n\n\nb: 2\n",
    "flow": "a: [1, two, {x: y}]\nb: {c: d, e: [f]}\n",
    "numbers": (
        "a: 9223372036854775807\nb: -9223372036854775808\nc: 1.7976931348623157e308\n"
        "d: 5e-324\ne: 1e21\nf: 123456789.123\ng: 0.000001\nh: 100000000000000000000.0\n"
    ),
}


_ATOMS: list[object] = [
    "x", "yes", "no", "on", "1", "0x10", "1.5", "1e5", "-", "- a", "a: b", "a #b", "#c", "'q'",
    '"d"', " sp", "sp ", "", "null", "~", "true", "\u00e9", "\U0001f600", "tab\there",
    "multi\nline", "end\n", "a\\b", "[x]", "{y}", "@a", "`b", "!t", "%p", "&a", "*a", "12:30",
    "2020-01-02", "0777", "+5", ".inf", "1_0", "a,b", "?x", "x?", ":x", "x:", "long " * 20,
    "\u00a0nbsp", "\ufeffbom", 0.5, 1.0, 1e21, 1e-7, -0.0, True, False, None, 42, -7,
]  # fmt: skip


def random_document(rnd: random.Random) -> str:
    """A random JSON document (JSON is YAML) of odd keys and values, for interop tests."""

    def scalar() -> object:
        if rnd.random() < 0.8:
            return rnd.choice(_ATOMS)
        return "".join(rnd.choice("abc xyz:#-\n'\"") for _ in range(rnd.randint(1, 8)))

    def node(depth: int) -> object:
        r = rnd.random()
        if depth > 3 or r < 0.5:
            return scalar()
        if r < 0.75:
            return {
                (f"k{rnd.randint(0, 99)}" if rnd.random() < 0.8 else str(scalar())): node(depth + 1)
                for _ in range(rnd.randint(0, 4))
            }
        return [node(depth + 1) for _ in range(rnd.randint(0, 4))]

    return json.dumps({f"top{i}": node(0) for i in range(rnd.randint(1, 4))}, ensure_ascii=False)
