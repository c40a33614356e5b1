"""Bench: `nixify secrets rekey` against a loop of `sops updatekeys -y`.

    .venv/bin/python bench/rekey.py [--files 500] [--recipients 16] [--sample 50]

Builds a secrets tree in a temp dir: N sops YAML files, each keyed to R age
recipients (operator + R-1 hosts). The rule then swaps one host for a new one
(the job a rebuilt host causes), and both tools bring the files to it:

* nixify: one `nixify secrets rekey` process over the whole tree (a pool of
  worker processes, 2 per CPU, so both cores of this machine work; atomic per
  file, MAC verified before writing); also timed with `--jobs 1` (one process)
  to show what the pool buys;
* baseline: `sops updatekeys -y FILE` once per file, as a shell loop would. It
  is timed on a sample of the files (identical copies, fresh tree) and
  extrapolated to N, and the output says so.

Each tool runs --repeat times on a fresh copy and the best run is compared
(the machine is shared; the best run is the least disturbed one).

Keys are made at run time; nothing is written outside the temp dir.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyrage

ROOT = Path(__file__).resolve().parents[1]
SOPS = ROOT / ".venv" / "bin" / "sops"
NIXIFY = ROOT / ".venv" / "bin" / "nixify"

sys.path.insert(0, str(ROOT))
from bench.benchkit import loadavg, machine, table  # noqa: E402
from nixify.secrets.rules import CONFIG_NAME, compute_rules, render_sops_yaml  # noqa: E402
from nixify.secrets.sopsfile import SopsFile, encrypt_tree  # noqa: E402
from nixify.secrets.yamlio import load as yaml_load  # noqa: E402

DOC = """\
# service credentials
service:
    user: svc
    password: {pw}
    port: 8443
tokens:
    - {t1}
    - {t2}
"""


def build_tree(root: Path, files: int, hosts: list[str], op: str) -> dict[str, str]:
    root.mkdir(parents=True)
    recipients = {f"h{i:02d}": r for i, r in enumerate(hosts)}
    for i in range(files):
        doc = yaml_load(DOC.format(pw=os.urandom(8).hex(), t1=os.urandom(6).hex(), t2=i))
        (root / f"s{i:04d}.yaml").write_text(encrypt_tree(doc, "yaml", [op, *recipients.values()]))
    return recipients


def write_rules(root: Path, files: int, recipients: dict[str, str], op: str) -> None:
    mounts = {h: [f"s{i:04d}.yaml" for i in range(files)] for h in recipients}
    (root / CONFIG_NAME).write_text(render_sops_yaml(compute_rules(mounts, recipients, [op])))


def children_cpu() -> float:
    """User + system CPU of every child waited for so far (workers included)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--recipients", type=int, default=16)
    ap.add_argument("--sample", type=int, default=50, help="files the sops loop is timed on")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the best counts")
    args = ap.parse_args()
    print(machine())

    with tempfile.TemporaryDirectory(prefix="nixify-bench-rekey-") as tmp:
        base = Path(tmp)
        op = pyrage.x25519.Identity.generate()
        op_file = base / "op.txt"
        op_file.write_text(f"{op}\n")
        op_file.chmod(0o600)
        hosts = [
            str(pyrage.x25519.Identity.generate().to_public()) for _ in range(args.recipients - 1)
        ]
        newcomer = str(pyrage.x25519.Identity.generate().to_public())

        t0 = time.perf_counter()
        tree = base / "secrets"
        recipients = build_tree(tree, args.files, hosts, str(op.to_public()))
        sample = base / "sample"
        sample.mkdir()
        for f in sorted(tree.glob("s*.yaml"))[: args.sample]:
            shutil.copy2(f, sample / f.name)
        # the rule change: host h00 leaves, a new host joins
        recipients.pop("h00")
        recipients["h99"] = newcomer
        write_rules(tree, args.files, recipients, str(op.to_public()))
        write_rules(sample, min(args.sample, args.files), recipients, str(op.to_public()))
        print(
            f"setup: {args.files} files x {args.recipients} recipients in "
            f"{time.perf_counter() - t0:.1f}s"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
        env["SOPS_AGE_KEY_FILE"] = str(op_file)
        env["HOME"] = str(base)

        # each tool runs `--repeat` times on a fresh copy; the best run counts (load noise)
        def rekey_runs(extra: list[str]) -> tuple[list[float], str]:
            times = []
            cpu0 = children_cpu()
            for _ in range(args.repeat):
                work = base / "work"
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(tree, work)
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [str(NIXIFY), "secrets", "rekey", *extra, str(work)],
                    env=env, capture_output=True, text=True,
                )  # fmt: skip
                times.append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise SystemExit(f"{proc.stdout[-2000:]} {proc.stderr[-2000:]}")
            cpu[tuple(extra)] = (children_cpu() - cpu0) / args.repeat
            return times, proc.stdout.strip().splitlines()[-1]

        cpu: dict[tuple[str, ...], float] = {}

        one_times, _ = rekey_runs(["--jobs", "1"])
        nixify_times, summary = rekey_runs([])
        t_nixify, t_one = min(nixify_times), min(one_times)
        print(f"nixify secrets rekey -> {summary}")

        n = min(args.sample, args.files)
        sops_times = []
        cpu0 = children_cpu()
        for _ in range(args.repeat):
            work_sample = base / "work-sample"
            shutil.rmtree(work_sample, ignore_errors=True)
            shutil.copytree(sample, work_sample)
            t0 = time.perf_counter()
            for f in sorted(work_sample.glob("s*.yaml")):
                subprocess.run(
                    [str(SOPS), "updatekeys", "-y", f.name],
                    env=env, cwd=work_sample, check=True, capture_output=True,
                )  # fmt: skip
            sops_times.append(time.perf_counter() - t0)
        cpu_sops = (children_cpu() - cpu0) / args.repeat / n * args.files
        t_sample = min(sops_times)
        t_sops = t_sample / n * args.files
        note = (
            "" if n == args.files else f", timed on {n} files and extrapolated x{args.files / n:g}"
        )
        tree, sample = base / "work", base / "work-sample"

        # both end states are right: the newcomer is in, h00 is out, in both trees
        for d in (tree, sample):
            for f in sorted(d.glob("s*.yaml"))[:5]:
                rc = SopsFile.load(f).recipients
                assert newcomer in rc and hosts[0] not in rc, f
        def row(name: str, best: float, times: list[float], cpu_s: float) -> list[str]:
            return [name, f"{best:.2f}", f"{best / args.files * 1000:.1f}",
                    " ".join(f"{t:.2f}" for t in times), f"{cpu_s:.2f}",
                    f"{t_sops / best:.1f}x"]

        print(
            f"\nrekey: {args.files} files x {args.recipients} recipients (one host swapped), "
            f"best of {args.repeat}; load after: {loadavg()}"
        )
        print(table(
            ["tool", "wall s", "ms/file", "runs s", "cpu s/run", "sops loop / tool"],
            [
                row("nixify secrets rekey (pool)", t_nixify, nixify_times, cpu[()]),
                row("nixify secrets rekey --jobs 1", t_one, one_times, cpu[("--jobs", "1")]),
                [f"sops updatekeys -y loop{note}", f"{t_sops:.2f}",
                 f"{t_sample / n * 1000:.1f}",
                 " ".join(f"{t / n * args.files:.2f}" for t in sops_times),
                 f"{cpu_sops:.2f}", "1.0x"],
            ],
        ))  # fmt: skip
        ratio = t_sops / t_nixify
        print(f"\ntarget: nixify >= 50x the sops updatekeys loop: {ratio:.1f}x "
              f"{'met' if ratio >= 50 else 'NOT met'}; the pool is {t_one / t_nixify:.2f}x "
              f"one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
