"""The documentation site (nixify docs build): every internal link resolves, every page
carries the provenance line, nothing is loaded from the network, the reference lists
every command, --data key and host-data field the code has (compared with the code, so
they cannot drift), and a leak planted in a page fails the build with exit 1 naming the
rendered file and line and the source line, leaving no site behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from labkit import REPO

from nixify.docs.reference import cli_commands
from nixify.inventory.model import HostData
from nixify.pipeline.options import KEYS
from nixify.pipeline.report import RunReport


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []  # scripts, stylesheets, images, fonts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _build(out: Path, src: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nixify.cli", "docs", "build", "--out", str(out)]
    if src is not None:
        cmd += ["--src", str(src)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    began = time.monotonic()
    proc = _build(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - began < 60
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_internal_link_resolves(site: Path) -> None:
    parsed = {p: _parse(p) for p in _pages(site)}
    assert len(parsed) >= 15
    broken = []
    for page, doc in parsed.items():
        for href in doc.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue
            if not parts.path:
                target = page
            elif parts.path.startswith("/"):  # the 404 page links from the site's root
                target = (site / unquote(parts.path).lstrip("/")).resolve()
            else:
                target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {href} (no file)")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html" and frag not in _parse(target).ids:
                broken.append(f"{page.relative_to(site)}: {href} (no #{frag})")
    assert broken == []


def test_every_page_carries_provenance_and_loads_nothing_external(site: Path) -> None:
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert "nixify-provenance" in text, page
        assert re.search(r"Provenance: generated from nixify \S+ @ [0-9a-f]{7} \((clean tree|"
                         r"dirty tree: uncommitted changes)\); \d{4}-\d\d-\d\d", text), page
        for res in _parse(page).resources:
            assert not urlsplit(res).scheme and not res.startswith("//"), (page, res)
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text


def test_reference_lists_every_command_key_and_field(site: Path) -> None:
    cli = _parse(site / "reference" / "cli.html")
    cli_text = (site / "reference" / "cli.html").read_text()
    commands = cli_commands()
    assert len(commands) > 30
    for path, _parser in commands:
        assert "-".join(path) in cli.ids, path
        assert " ".join(path) in cli_text, path
    for top in ("docs", "report", "status", "rollback", "lab", "secrets", "leak-scan"):
        assert f"nixify-{top}" in cli.ids
    keys = _parse(site / "reference" / "data-keys.html")
    assert set(KEYS) <= keys.ids
    fields = _parse(site / "reference" / "host-data.html")
    assert set(HostData.model_fields) <= fields.ids
    run_report = (site / "reference" / "run-report.html").read_text()
    for name in RunReport.model_fields:
        assert f"<code>{name}</code>" in run_report, name
    status = (site / "reference" / "status.html").read_text()
    assert "<code>hosts</code>" in status


def test_a_planted_leak_fails_the_build_and_publishes_nothing(tmp_path: Path) -> None:
    import pyrage

    src = tmp_path / "docs"
    shutil.copytree(REPO / "docs", src)
    address = ".".join(["10", "1", "2", "3"])
    identity = str(pyrage.x25519.Identity.generate())
    assert identity.startswith("AGE-SECRET-KEY-1")
    page = src / "how-to" / "rekey.md"
    lines = page.read_text().splitlines()
    lines.insert(3, f"The NAS answers on {address} today.")
    page.write_text("\n".join(lines) + "\n")
    roll = src / "how-to" / "roll-back.md"
    roll.write_text(roll.read_text() + f"\n    {identity}\n")
    roll_line = len(roll.read_text().splitlines())

    out = tmp_path / "site"
    assert _build(out, src=REPO / "docs").returncode == 0  # a previous, good site
    assert (out / "index.html").is_file()
    proc = _build(out, src=src)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert re.search(rf"{re.escape(str(out))}/how-to/rekey\.html:\d+:\d+: private-ipv4", err), err
    assert "how-to/rekey.md:4)" in err, err
    assert re.search(r"how-to/roll-back\.html:\d+:\d+: age-", err), err
    assert f"how-to/roll-back.md:{roll_line})" in err, err
    assert identity not in err  # the gate prints a redacted match, never the key
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []
    assert os.listdir(tmp_path)  # the sources are still there
