"""``nixify docs build [--out DIR]``: the project's documentation as a static site.

Exit 0 with the site at DIR (default ``build/docs``), 1 when the leak gate finds
something in the rendered site (nothing is published; each finding names the file
and line), 2 on bad input (no sources, a broken link, an --out that is not ours).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nixify import paths


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "docs", help="the project's documentation: build the static site",
        description="nixify's own documentation (MkDocs + Material, offline).",
    )
    sub = p.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="render docs/ and the generated reference into a static site; leak-gated",
        description=(
            "Render docs/ plus a reference generated from the code (every command's "
            "help, the --data keys, the host-data fields, the run report and status "
            "schemas) with MkDocs and the Material theme, offline. Every page carries a "
            "provenance line. The leak gate scans the rendered site (honouring "
            ".leak-allowlist); a finding blocks the build with exit 1 and nothing is "
            "published."
        ),
    )
    b.add_argument("--out", type=Path, default=None,
                   help="where the site goes (default: build/docs of the project)")
    b.add_argument("--src", type=Path, default=None,
                   help="the documentation sources (default: docs/ of the project)")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from nixify.docs.build import build_site

    root = paths.repo_root()
    out = args.out or root / "build" / "docs"
    result = build_site(root, out, args.src)
    print(f"nixify docs: {result.pages} pages in {result.out} ({result.seconds:.1f} s; "
          f"leak gate clean, {result.allowed} allowlisted); {result.provenance.line}")
    return 0
