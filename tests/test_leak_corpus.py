"""The leak corpus: every kind caught in every format and position; a clean corpus is clean."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import pytest
from test_leak_material import Leak, dotted, make_leaks, nix_cache_keypair

from nixify.leak.patterns import KINDS
from nixify.leak.scanner import Finding, scan_bytes, scan_paths

# (format, position) -> (file suffix, template, 1-based line of the value).
# "{v}" is replaced by the multi-line form at line starts and mid-line,
# by the single-line form inside URLs and brackets.
TEMPLATES: dict[tuple[str, str], tuple[str, str, int]] = {
    ("yaml", "line-start"): ("yaml", "hosts:\n  nas: {}\n{v}\n", 3),
    ("yaml", "mid-line"): ("yaml", "hosts:\n  nas:\n    value: {v}\n", 3),
    ("yaml", "url"): ("yaml", "hosts:\n  url: https://{i}:8443/api\n", 2),
    ("yaml", "brackets"): ("yaml", "hosts: [a, {i}]\n", 1),
    ("nix", "line-start"): ("nix", "{ config, ... }:\n{v}\n", 2),
    ("nix", "mid-line"): ("nix", "{\n  networking.value = \"{v}\";\n}\n", 2),
    ("nix", "url"): ("nix", "{\n  url = \"ssh://root@{i}/nix\";\n}\n", 2),
    ("nix", "brackets"): ("nix", "{\n  xs = [ \"{i}\" ];\n}\n", 2),
    ("markdown", "line-start"): ("md", "# Hosts\n\n{v}\n", 3),
    ("markdown", "mid-line"): ("md", "# Hosts\n\nThe builder is {v} today.\n", 3),
    ("markdown", "url"): ("md", "# Hosts\n\nSee [the box](http://{i}/status).\n", 3),
    ("markdown", "brackets"): ("md", "# Hosts\n\nA box ({i}) and [{i}].\n", 3),
    ("shell", "line-start"): ("sh", "#!/bin/sh\n{v}\n", 2),
    ("shell", "mid-line"): ("sh", "#!/bin/sh\nexport VALUE='{v}'\n", 2),
    ("shell", "url"): ("sh", "#!/bin/sh\ncurl -s \"https://{i}/x?y=1\"\n", 2),
    ("shell", "brackets"): ("sh", "#!/bin/sh\narr=(\"{i}\")\n", 2),
    ("json", "line-start"): ("json", "[\n{v}\n]\n", 2),
    ("json", "mid-line"): ("json", "{\n  \"value\": \"{v}\"\n}\n", 2),
    ("json", "url"): ("json", "{\"url\": \"https://{i}/a\"}\n", 1),
    ("json", "brackets"): ("json", "{\"list\": [\"{i}\"]}\n", 1),
}


@pytest.fixture(scope="module")
def leaks(tmp_path_factory: pytest.TempPathFactory) -> list[Leak]:
    return make_leaks(tmp_path_factory.mktemp("keys"))


def render(template: str, leak: Leak) -> str:
    return template.replace("{v}", leak.text).replace("{i}", leak.inline)


def test_material_covers_every_kind(leaks: list[Leak]) -> None:
    assert {leak.kind for leak in leaks} == set(KINDS)


def test_every_leak_caught_in_every_format_and_position(
    leaks: list[Leak], tmp_path: Path
) -> None:
    expected: dict[str, tuple[str, int]] = {}
    for leak in leaks:
        for (fmt, pos), (suffix, template, line) in TEMPLATES.items():
            path = tmp_path / f"{leak.name}--{fmt}--{pos}.{suffix}"
            path.write_text(render(template, leak))
            expected[str(path)] = (leak.kind, line)
    findings = scan_paths([tmp_path], jobs=2)
    by_path: dict[str, list[Finding]] = {}
    for f in findings:
        by_path.setdefault(f.path, []).append(f)
    missed = []
    for path, (kind, line) in expected.items():
        got = by_path.get(path, [])
        if not any(f.kind == kind and f.line == line for f in got):
            missed.append(f"{os.path.basename(path)}: want {kind} at line {line}, got "
                          + ", ".join(f"{f.kind}@{f.line}" for f in got))
    assert not missed, "\n".join(missed)
    assert len(expected) == len(leaks) * len(TEMPLATES)


def test_findings_never_print_the_value(leaks: list[Leak]) -> None:
    for leak in leaks:
        for f in scan_bytes(f"x = {leak.inline}\n".encode(), "f.txt"):
            assert leak.inline not in f.render()
            assert leak.inline[6:] not in f.render()


NIX_PUBLIC = nix_cache_keypair(Path(tempfile.mkdtemp(prefix="leak-corpus-")))[1]

CLEAN_LINES = [
    "dns = 8.8.8.8 and 1.1.1.1, mirror at 110.1.2.3 and 45.10.0.1",
    "loopback 127.0.0.1 and 0.0.0.0 and 255.255.255.255",
    "docs ranges: 192.0.2.10, 198.51.100.7, 203.0.113.9 (TEST-NET-1/2/3)",
    "neighbours of the blocks: 172.15.0.1 172.32.0.1 192.169.0.1 11.0.0.1 9.255.255.255",
    "outside the CGNAT block: 100.63.255.255 and 100.128.0.1",
    "a longer dotted number: " + dotted(10, 1, 2, 3, 4) + " and " + dotted(1, 192, 168, 0, 1),
    "octets out of range: " + dotted(10, 300, 1, 1) + " " + dotted(192, 168, 256, 1),
    "version strings: v" + dotted(10, 2, 3, 4) + ", 1.10.2, python3.11.4, 10.0.1, nix 2.8",
    "release-" + dotted(10, 0, 0) + " and build " + dotted(172, 16, 1),
    "/nix/store/0c5ckw1w2zs3kfy7ymhfz0vvn9jbyb1b-hello-2.12.1",
    "/nix/store/a1e0fd7a115cxs3kfy7ymhfz0vvn9jbyb1-age-1.1.1",
    "sha256-" + base64.b64encode(bytes(range(32))).decode(),
    "blob: " + base64.b64encode(b"\0\0\0\x05hello" + bytes(40)).decode(),
    "random: " + base64.b64encode(b"\x13\x37" * 40).decode(),
    "The age of a key matters; age 1 is young; the age1 prefix names a recipient.",
    "AGE" + "-SECRET-KEY-1 is the prefix of an identity (prefix only, no key here).",
    "ssh-" + "ed25519 is a key type; ecdsa-sha2-nistp256 too; sk-ssh keys need hardware.",
    "-----BEGIN PUBLIC KEY----- and -----BEGIN AGE ENCRYPTED FILE----- are not private",
    "ipv6: 2001:db8::1 and ::1 and ff02::1 and 64:ff9b::1 and fec0::1 (site-local, retired)",
    "the local blocks by name: fc00::/7, fd00::/8, fe80::/10, and fd00:: or FE80::",
    "a hex word like fd7a115ca1e0 is not an address, nor fe80 or fd00 alone",
    "sha256:4f2a9b" + "fe80" + ":12 and 0x" + "fe80" + "::1 and Ab" + "fd00" + "::2 glued",
    "words: kfd00::1, xfe80::1, feedfe80::1, mfc00::, 10:fd00::1",
    "a hash: 9c1e" + "fe80" + "11d0" + "fd00" + "a7bcfe8" + "0ab12cd" + "fd00" + "e3",
    "times and ratios: fd00:12, fe80:00:00, fc12:34:56",
    "C++ paths: fd00::value and fe80::Thing::x",
    "/nix/store/fd00fe80fc00zz1ib7ll2ayhrxq0w7bcms9s-fd00-1.0",
    "public cache key: " + NIX_PUBLIC,
    "sops: ENC[AES256_GCM,data:" + base64.b64encode(bytes(range(64))).decode()
    + ",iv:" + base64.b64encode(bytes(32)).decode() + ",tag:"
    + base64.b64encode(bytes(16)).decode() + ",type:str]",
    "a hash: sha512:" + base64.b64encode(bytes(range(1, 65))).decode(),
    "name:" + base64.b64encode(bytes(range(64))).decode() + " is not a key pair",
    "PublicKey = " + base64.b64encode(bytes(range(32))).decode(),
    "privateKeyFile = /run/keys/wg0 and PrivateKey = <your key> and private_key: ''",
    "wg: PrivateKey = " + base64.b64encode(bytes(range(33))).decode() + " is 33 bytes",
    "tailscale ranges are named, never written: the CGNAT block and the ULA /48",
    "ports 10.5 and ratios 100.64 and 192.168 alone are not addresses",
]


@pytest.mark.parametrize(
    ("suffix", "wrap"),
    [
        ("yaml", "- {}\n"),
        ("nix", "  # {}\n"),
        ("md", "{}\n\n"),
        ("sh", "echo '{}'\n"),
        ("json", "\"{}\",\n"),
    ],
)
def test_clean_corpus_has_no_findings(suffix: str, wrap: str, tmp_path: Path) -> None:
    path = tmp_path / f"clean.{suffix}"
    path.write_text("".join(wrap.format(line) for line in CLEAN_LINES))
    assert scan_paths([tmp_path]) == []


def test_scanner_sources_pass_their_own_gate() -> None:
    root = Path(__file__).resolve().parent.parent
    paths = [root / "nixify" / "leak", *sorted((root / "tests").glob("test_leak_*.py")),
             root / "bench" / "leakscan.py"]
    assert scan_paths(paths) == []


def test_process_pool_finds_the_same_as_one_process(
    leaks: list[Leak], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nixify.leak import scanner

    for i, leak in enumerate(leaks):
        (tmp_path / f"f{i}.txt").write_text(f"pad\n{leak.text}\n" * (i + 1))
    serial = scanner.scan_paths([tmp_path], jobs=1)
    monkeypatch.setattr(scanner, "PARALLEL_THRESHOLD", 0)
    parallel = scanner.scan_paths([tmp_path], jobs=2)
    assert parallel == serial
    assert len(serial) >= sum(i + 1 for i in range(len(leaks)))


def test_many_anchor_hits_still_find_everything(leaks: list[Leak]) -> None:
    blob = next(leak for leak in leaks if leak.name == "ssh-ed25519").inline
    # Thousands of "AAAA" hits (a zero-filled base64 run) before and after a real blob.
    data = ("A" * 5000 + "\n" + blob + "\n" + "A" * 5000 + "\n" + blob + "\n").encode()
    found = [(f.kind, f.line) for f in scan_bytes(data, "zeros.txt")]
    assert found == [("ssh-public-key", 2), ("ssh-public-key", 4)]
