"""The leak gate: find what must not be published (addresses, keys) in files or history."""

from nixify.leak.patterns import KINDS
from nixify.leak.scanner import Finding, scan_bytes, scan_files, scan_paths

__all__ = ["KINDS", "Finding", "scan_bytes", "scan_files", "scan_paths"]
