"""A Nix binary cache served over HTTP from a directory: GET and HEAD for hosts,
PUT for builders (``nix copy --to http://...`` uploads with PUT).

The directory is an ordinary ``file://`` binary cache (``nix-cache-info``,
``*.narinfo``, ``nar/*.nar.xz``). Uploads are written to a temporary file and
renamed into place, so a reader never sees half a NAR or half a narinfo.
Stdlib only: it runs on any host with Python 3.

    python3 -m nixify.cache.server --dir /var/lib/nixify/cache --address 127.0.3.14 --port 5080
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CACHE_INFO = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"
MAX_UPLOAD = 4 << 30


def resolve(root: Path, url_path: str) -> Path | None:
    """The file under ``root`` that ``url_path`` names, or None if it would leave ``root``."""
    rel = unquote(urlsplit(url_path).path).lstrip("/")
    if not rel or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    target = (root / rel).resolve()
    return target if target.is_relative_to(root.resolve()) else None


class CacheHandler(BaseHTTPRequestHandler):
    server_version = "nixify-cache/1"
    # HTTP/1.1: keep-alive, and "Expect: 100-continue" answered at once (curl, and so
    # Nix, would otherwise wait a second before each upload).
    protocol_version = "HTTP/1.1"
    root: Path = Path(".")
    writable = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: a cache serves many small requests

    def _send(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _serve(self) -> None:
        target = resolve(self.root, self.path)
        if target is None or not target.is_file():
            self._send(404, b"not found\n")
            return
        ctype = "text/x-nix-narinfo" if target.suffix == ".narinfo" else "application/octet-stream"
        size = target.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "GET":
            with target.open("rb") as f:
                while chunk := f.read(1 << 16):
                    self.wfile.write(chunk)

    do_GET = _serve
    do_HEAD = _serve

    def do_PUT(self) -> None:
        if not self.writable:
            self._send(403, b"read-only cache\n")
            return
        target = resolve(self.root, self.path)
        length = int(self.headers.get("Content-Length") or -1)
        if target is None or not 0 <= length <= MAX_UPLOAD:
            self._send(400, b"bad upload\n")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        raise OSError("upload ended early")
                    out.write(chunk)
                    left -= len(chunk)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._send(500, b"upload failed\n")
            return
        self._send(201)


def make_server(root: Path, address: str, port: int, writable: bool = True) -> ThreadingHTTPServer:
    if not address.startswith("127."):
        raise SystemExit(f"nixify cache server: {address}: only loopback (127.0.0.0/8) addresses")
    root.mkdir(parents=True, exist_ok=True)
    info = root / "nix-cache-info"
    if not info.exists():
        info.write_text(CACHE_INFO)
    handler = type("Handler", (CacheHandler,), {"root": root, "writable": writable})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nixify-cache-server", description=__doc__)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=5080)
    p.add_argument("--read-only", action="store_true")
    args = p.parse_args(argv)
    server = make_server(args.dir, args.address, args.port, not args.read_only)
    print(f"serving {args.dir} on http://{args.address}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
