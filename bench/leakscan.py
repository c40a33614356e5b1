"""Bench: `nixify leak-scan` against ripgrep with the same patterns, same run.

Generates a ~200 MB tree of text files (prose, YAML, Nix, version strings,
public addresses, store paths, non-key base64, and a few planted leaks built at
run time) in a temporary directory, removes it afterwards, and times:

- nixify: ``nixify leak-scan --json DIR`` (a fresh process, as a user runs it),
  and ``python -m nixify.leak`` (the same scan without the CLI dispatcher,
  to show the scanner's own cost);
- baseline ``rg -P``: ripgrep with PCRE2 on exactly the combined expression
  nixify compiles (``nixify.leak.patterns.COMBINED_SOURCE``);
- baseline ``rg`` (Rust engine): the same expression with the look-arounds
  removed, since that engine has none (slightly broader, faster).

Both ripgrep runs get ``-a`` (binary files read as text), since nixify reads
every byte of every file. ``--binary-mb N`` adds N MiB of binary files (random
bytes, NUL-heavy, with a UTF-16 region) to the tree to show that cost.

Each tool runs ``--runs`` times after one warm-up (page cache hot for all);
the best time counts. Prints both times and the ratios. Target: <= 3x.

    .venv/bin/python bench/leakscan.py [--mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nixify.leak.patterns import COMBINED_SOURCE

PROSE = (
    "the builder evaluates closure host role deploy switch activation profile nix store "
    "age of the fleet is measured in generations and every secret has an owner while "
    "operators review agents propose integrate fast forward only known good pin"
)
WORDS = PROSE.split(" ")


def _line(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
    if r < 0.5:
        return f"  version = \"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}\";"
    if r < 0.6:
        ip = ".".join(str(rng.choice([8, 1, 9, 110, 45, 203])) for _ in range(4))
        return f"upstream: https://{ip}:{rng.randint(1, 65535)}/api"
    if r < 0.7:
        h = "".join(rng.choice("0123456789abcdfghijklmnpqrsvwxyz") for _ in range(32))
        return f"  /nix/store/{h}-pkg-{rng.randint(1, 99)}.{rng.randint(0, 9)}"
    if r < 0.8:
        return "data: " + base64.b64encode(rng.randbytes(48)).decode()
    if r < 0.9:
        return f"  {rng.choice(WORDS)}_{rng.randint(0, 999)}: {rng.randint(0, 10**6)}"
    n = f"1{rng.randint(0, 99)}.{rng.randint(0, 9)}"
    return f"# {rng.choice(WORDS)} {n} section {rng.randint(1, 20)}"


def _leak(rng: random.Random) -> str:
    a = rng.choice(["10", "192"])
    second = "168" if a == "192" else str(rng.randint(0, 255))
    ip = ".".join([a, second, str(rng.randint(0, 255)), str(rng.randint(1, 254))])
    return f"  address = \"{ip}\";"


def generate_binary(root: Path, total_mb: int) -> None:
    """Binary files: random bytes, zero runs and UTF-16 text, no leaks."""
    rng = random.Random(11)
    sub = root / "bin"
    sub.mkdir(exist_ok=True)
    utf16 = ("\n".join(_line(rng) for _ in range(200)) + "\n").encode("utf-16-le")
    written = i = 0
    while written < total_mb * 1024 * 1024:
        body = rng.randbytes(1 << 20) + bytes(1 << 18) + utf16
        (sub / f"b{i:04d}.bin").write_bytes(body)
        written += len(body)
        i += 1


def generate(root: Path, total_mb: int) -> int:
    """Write the tree; return the number of planted leaks."""
    rng = random.Random(7)
    chunks = []
    for _ in range(32):
        chunks.append(("\n".join(_line(rng) for _ in range(4000)) + "\n").encode())
    target = total_mb * 1024 * 1024
    written = planted = i = 0
    while written < target:
        sub = root / f"d{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        body = b"".join(rng.choice(chunks) for _ in range(rng.randint(1, 3)))
        if i % 10 == 0:
            body += (_leak(rng) + "\n").encode()
            planted += 1
        (sub / f"f{i:05d}.{rng.choice(['nix', 'yaml', 'md', 'sh', 'json'])}").write_bytes(body)
        written += len(body)
        i += 1
    return planted


def strip_lookarounds(pattern: str) -> str:
    """``pattern`` without its look-ahead and look-behind groups (Rust's regex has none)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            depth, j, in_class = 0, i, False
            while j < len(pattern):
                c = pattern[j]
                if c == "\\":
                    j += 2
                    continue
                if in_class:
                    in_class = c != "]"
                elif c == "[":
                    in_class = True
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


def _time(cmd: list[str], runs: int) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    proc = subprocess.run(cmd, capture_output=True)  # warm-up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary-mb", type=int, default=0)
    args = ap.parse_args()
    rg = shutil.which("rg")
    if rg is None:
        print("bench/leakscan.py: SKIPPED: ripgrep (rg) is not installed", file=sys.stderr)
        return 0
    nixify = str(Path(sys.executable).with_name("nixify"))
    tmp = Path(tempfile.mkdtemp(prefix="nixify-leakbench-"))
    try:
        t0 = time.perf_counter()
        planted = generate(tmp, args.mb)
        if args.binary_mb:
            generate_binary(tmp, args.binary_mb)
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        nfiles = sum(1 for f in tmp.rglob("*") if f.is_file())
        print(f"tree: {nfiles} files, {size / 2**20:.0f} MiB, {planted} planted leaks "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        pattern = COMBINED_SOURCE.decode()
        rust_pattern = strip_lookarounds(pattern)
        # -a: read binary files as text too, as nixify does (it reads every byte).
        rg_common = [rg, "--no-config", "--no-ignore", "--hidden", "-a", "--count-matches"]
        t_nix, p_nix = _time([nixify, "leak-scan", "--json", str(tmp)], args.runs)
        t_mod, p_mod = _time([sys.executable, "-m", "nixify.leak", "--json", str(tmp)], args.runs)
        t_pcre, p_pcre = _time([*rg_common, "-P", "-e", pattern, str(tmp)], args.runs)
        t_rust, p_rust = _time([*rg_common, "-e", rust_pattern, str(tmp)], args.runs)
        found = len(json.loads(p_nix.stdout)["findings"])
        found_mod = len(json.loads(p_mod.stdout)["findings"])

        def _count(p: subprocess.CompletedProcess[bytes]) -> int:
            return sum(int(line.rsplit(b":", 1)[1]) for line in p.stdout.splitlines())

        print(f"nixify leak-scan       : {t_nix:7.3f} s  findings={found} (planted {planted})")
        print(f"python -m nixify.leak  : {t_mod:7.3f} s  findings={found_mod}")
        print(f"baseline rg -P (PCRE2) : {t_pcre:7.3f} s  raw matches={_count(p_pcre)}")
        print(f"baseline rg (Rust re)  : {t_rust:7.3f} s  raw matches={_count(p_rust)}")
        print(f"ratio nixify / rg -P   : {t_nix / t_pcre:5.2f}x  (target <= 3x)")
        print(f"ratio nixify / rg      : {t_nix / t_rust:5.2f}x")
        print(f"ratio -m nixify.leak / rg -P : {t_mod / t_pcre:5.2f}x, "
              f"/ rg : {t_mod / t_rust:5.2f}x")
        rate = size / 2**20 / t_nix
        print(f"throughput nixify      : {rate:7.0f} MiB/s on {os.cpu_count()} CPUs")
        return 0 if found == planted == found_mod else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
