"""Build the project's documentation site: MkDocs with the Material theme, offline.

The sources in ``docs/`` are copied to a scratch directory, the reference pages are
generated from the code beside them (``nixify.docs.reference``), and MkDocs renders
the site (strict: a broken link or a missing page fails the build) into a staging
directory beside ``--out``. Every page carries a provenance line (branch @ short
revision, build date, dirty tree). The leak gate then scans every rendered file,
honouring ``.leak-allowlist`` as ``nixify leak-scan`` does; a finding blocks the build:
the staged site is deleted, a previous site at ``--out`` is removed too (it no longer
matches the tree), and the error names each rendered file and line and the source page
it came from. Only a clean site is moved into place, by rename.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nixify.docs.provenance import Provenance, provenance
from nixify.docs.reference import generated_pages
from nixify.errors import ConfigError, NixifyError
from nixify.leak import Finding, scan_files
from nixify.leak.allowlist import ALLOWLIST_NAME, Allowlist, load_allowlist

MARKER = ".nixify-docs"

NAV: list[Any] = [
    {"Home": "index.md"},
    {"Getting started": "getting-started.md"},
    {"Concepts": [
        {"The five gates": "concepts/gates.md"},
        {"Known-good pins and rollback": "concepts/known-good.md"},
        {"Releases": "concepts/releases.md"},
        {"Secrets and recipients": "concepts/secrets.md"},
        {"The leak gate and the git gate": "concepts/git-gate.md"},
    ]},
    {"How-to": [
        {"Add a host": "how-to/add-a-host.md"},
        {"Rotate a host key": "how-to/rotate-host-key.md"},
        {"Rekey secrets": "how-to/rekey.md"},
        {"Roll back": "how-to/roll-back.md"},
        {"Recover from a fault": "how-to/recover.md"},
        {"Docs and the fleet report": "how-to/docs-and-report.md"},
    ]},
    {"Reference": [
        {"Overview": "reference/index.md"},
        {"Command line": "reference/cli.md"},
        {"--data keys": "reference/data-keys.md"},
        {"Host data": "reference/host-data.md"},
        {"Run report schema": "reference/run-report.md"},
        {"Status output schema": "reference/status.md"},
    ]},
]

# The provenance line sits in the footer block, which every page (the 404 page too)
# renders; the content block is left to the pages.
MAIN_HTML = """{% extends "base.html" %}
{% block footer %}
<div class="md-typeset nixify-provenance" style="padding:.6rem 1.2rem;font-size:.7rem">
{{ config.extra.provenance | e }}</div>
{{ super() }}
{% endblock %}
"""


class LeakInSite(NixifyError):
    """The rendered site holds something the leak gate refuses."""

    exit_code = 1


@dataclass
class BuildResult:
    out: Path
    pages: int
    seconds: float
    provenance: Provenance
    allowed: int


def mkdocs_config(docs_dir: Path, theme_dir: Path, prov: Provenance) -> dict[str, Any]:
    return {
        "site_name": "nixify",
        "site_description": "Deploy and validate a NixOS fleet declared by role.",
        "docs_dir": str(docs_dir),
        "use_directory_urls": False,  # links work when the site is opened from disk
        "strict": True,
        "theme": {
            "name": "material",
            "custom_dir": str(theme_dir),
            "font": False,  # no web fonts: the site builds and reads offline
            "features": ["navigation.sections", "navigation.top", "toc.follow"],
        },
        "plugins": ["search"],
        "markdown_extensions": [
            "admonition", "attr_list", "tables", "pymdownx.details", "pymdownx.superfences",
            {"toc": {"permalink": True}},
        ],
        "validation": {
            "omitted_files": "warn", "absolute_links": "warn", "unrecognized_links": "warn",
            "anchors": "warn",
        },
        "extra": {"generator": False, "provenance": prov.line},
        "nav": NAV,
    }


def _site_files(site: Path) -> list[str]:
    out: list[str] = []
    for root, dirs, files in os.walk(site):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in sorted(files))
    return out


def _allowlist(repo: Path) -> Allowlist:
    path = repo / ALLOWLIST_NAME
    return load_allowlist(path if path.is_file() else None, repo)


def _sources(docs: Path, generated: dict[str, str], scratch: Path) -> dict[str, str]:
    """fingerprint -> ``source-file:line`` for every leak-gate match in the sources."""
    where: dict[str, str] = {}
    files = [str(p) for p in sorted(docs.rglob("*")) if p.is_file()]
    for f in scan_files(files, jobs=1):
        where.setdefault(f.fingerprint, f"{f.path}:{f.line}")
    gen = [str(scratch / "docs" / rel) for rel in generated]
    for f in scan_files(gen, jobs=1):
        rel = os.path.relpath(f.path, scratch / "docs")
        where.setdefault(f.fingerprint, f"generated {rel}:{f.line}")
    return where


def leak_findings(site: Path, out: Path, repo: Path) -> tuple[list[Finding], int]:
    """Findings in the staged ``site``, named as their published path under ``out``,
    that ``.leak-allowlist`` does not allow; and how many it allowed."""
    allowlist = _allowlist(repo)
    blocking: list[Finding] = []
    allowed = 0
    for f in scan_files(_site_files(site)):
        published = dataclasses.replace(f, path=str(out / os.path.relpath(f.path, site)))
        if allowlist.allows(published):
            allowed += 1
        else:
            blocking.append(published)
    return blocking, allowed


def _remove_site(path: Path) -> bool:
    if (path / MARKER).is_file():
        shutil.rmtree(path)
        return True
    return False


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ConfigError(
            f"--out {out}: exists and is not a site nixify built (no {MARKER}); "
            "choose an empty or new directory"
        )


def build_site(repo: Path, out: Path, src: Path | None = None) -> BuildResult:
    """Render ``src`` (default ``repo/docs``) into ``out``; raise ``LeakInSite`` (exit
    1) when the rendered site holds a leak, leaving no site at ``out``."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    began = time.monotonic()
    docs = src or repo / "docs"
    if not (docs / "index.md").is_file():
        raise ConfigError(f"{docs}: no documentation sources (index.md) here")
    out = out.resolve()
    _check_out(out)
    prov = provenance(repo)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix="nixify-docs-"))
    try:
        shutil.copytree(docs, scratch / "docs")
        generated = generated_pages()
        for rel, text in generated.items():
            target = scratch / "docs" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        theme = scratch / "theme"
        theme.mkdir()
        (theme / "main.html").write_text(MAIN_HTML, encoding="utf-8")
        config_file = scratch / "mkdocs.yml"
        config_file.write_text(
            yaml.safe_dump(mkdocs_config(scratch / "docs", theme, prov), sort_keys=False),
            encoding="utf-8",
        )
        logging.getLogger("mkdocs").setLevel(logging.WARNING)
        try:
            cfg = load_config(config_file=str(config_file), site_dir=str(staging))
            mkdocs_build(cfg)
        except MkDocsException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ConfigError(f"docs build failed (mkdocs, strict): {exc}") from None

        blocking, allowed = leak_findings(staging, out, repo)
        if blocking:
            sources = _sources(docs, generated, scratch)
            shutil.rmtree(staging, ignore_errors=True)
            removed = _remove_site(out)
            lines = [
                f"{f.render()}" + (f" (source: {sources[f.fingerprint]})"
                                   if f.fingerprint in sources else "")
                for f in blocking
            ]
            tail = (f"; the previous site at {out} was removed" if removed else "")
            raise LeakInSite(
                f"docs build blocked by the leak gate: {len(blocking)} finding(s) in the "
                f"rendered site; nothing published{tail}:\n  " + "\n  ".join(lines)
            )
        (staging / MARKER).write_text(prov.line + "\n", encoding="utf-8")
        pages = sum(1 for f in _site_files(staging) if f.endswith(".html"))
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return BuildResult(out, pages, time.monotonic() - began, prov, allowed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
