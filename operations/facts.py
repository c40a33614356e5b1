"""pyinfra facts nixify reads from hosts: Nix settings, running system, known-good pins."""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from pyinfra.api.facts import FactBase

from nixify.pipeline.activation import INTENT, JOBS_DIR
from nixify.pipeline.pins import GCROOT_DIR, RECORD_DIR, KnownGoodRecord, RecordError


class RecordListing(list[KnownGoodRecord]):
    """A host's readable known-good records, oldest first, and the files skipped
    because they could not be read (``"<file>: <why>"``)."""

    def __init__(self, records: list[KnownGoodRecord], skipped: list[str]) -> None:
        super().__init__(records)
        self.skipped = skipped


_RECORD_LINES = (
    f'for f in {RECORD_DIR}/*.json; do [ -f "$f" ] || continue; '
    'printf "record=%s %s\\n" "$f" "$(base64 -w0 < "$f")"; done'
)


@dataclass(frozen=True)
class DeployFacts:
    """What a deploy reads of a host before it starts."""

    running: str = ""
    max_jobs: str = ""
    deriver: str = ""
    activating: str = ""  # the intent of another run's activation still under way
    records: RecordListing = field(default_factory=lambda: RecordListing([], []))


class DeployState(FactBase[DeployFacts]):
    """What a deploy reads before it starts, in one round trip: the running system,
    its derivation (for the diff gate's root causes), Nix's effective max-jobs (a
    constrained host must report 0) and the host's known-good records (which gate 4
    returns to, which gate 5 refreshes or prunes, which a rollback selects from)."""

    def command(self) -> str:
        return (
            'r=$(readlink -f /run/current-system 2>/dev/null); echo "running=$r"; '
            "echo \"max-jobs=$(nix show-config 2>/dev/null | sed -n 's/^max-jobs = //p')\"; "
            '[ -n "$r" ] && echo "deriver=$(nix-store -q --deriver "$r" 2>/dev/null)"; '
            # an activation of an earlier run that has not ended (its job still runs)
            f'if [ -f {INTENT} ]; then j=$(sed -n \'s/.*"job": "\\([^"]*\\)".*/\\1/p\' '
            f'{INTENT}); d={JOBS_DIR}/$j; p=$(cat "$d/pid" 2>/dev/null); '
            'if [ -n "$j" ] && [ ! -e "$d/rc" ] && [ -n "$p" ] && [ -e "/proc/$p" ]; then '
            f'echo "activating=$(tr -d \'\\n\' < {INTENT})"; fi; fi; '
            + _RECORD_LINES + "; true"
        )

    def process(self, output: list[str]) -> DeployFacts:
        result: dict[str, str] = {}
        record_lines: list[str] = []
        for line in output:
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "record":
                record_lines.append(value)
            elif key in ("running", "max-jobs", "deriver", "activating"):
                result[key] = value.strip()
        return DeployFacts(
            running=result.get("running", ""),
            max_jobs=result.get("max-jobs", ""),
            deriver=result.get("deriver", ""),
            activating=result.get("activating", ""),
            records=parse_record_lines(record_lines),
        )


class SystemState(FactBase[dict[str, str]]):
    """The host's running, booted and profile systems (resolved store paths), and its
    boot-loader entry: ``boot_entry`` when the host's data declares where its boot
    loader keeps it, else the system profile (what NixOS's boot loader boots)."""

    def command(self, boot_entry: str | None = None) -> str:
        links = [*_SYSTEM_LINKS, boot_entry or _PROFILE]
        return (
            f"for l in {' '.join(shlex.quote(link) for link in links)}; do "
            'printf "%s=%s\\n" "$l" "$(readlink -f "$l" 2>/dev/null)"; done'
        )

    def process(self, output: list[str]) -> dict[str, str]:
        names = dict(zip(_SYSTEM_LINKS, ("running", "booted", "profile"), strict=True))
        result: dict[str, str] = {}
        for line in output:
            link, _, target = line.partition("=")
            if link in names and names[link] not in result:
                result[names[link]] = target
            else:
                result["boot_entry"] = target
        return result


_PROFILE = "/nix/var/nix/profiles/system"
_SYSTEM_LINKS = ("/run/current-system", "/run/booted-system", _PROFILE)


def parse_record_lines(lines: list[str]) -> RecordListing:
    """``<file> <base64 of the record>`` lines: the readable records, oldest first, and
    the files skipped, named with why."""
    records: list[KnownGoodRecord] = []
    skipped: list[str] = []
    for line in lines:
        path, _, data = line.strip().partition(" ")
        if not path:
            continue
        try:
            text = base64.b64decode(data, validate=True).decode()
            records.append(KnownGoodRecord.from_json(text, where=path))
        except RecordError as exc:
            skipped.append(str(exc))
        except (ValueError, UnicodeDecodeError):
            skipped.append(f"{path}: not readable text")
    return RecordListing(sorted(records, key=lambda r: r.name), skipped)


class KnownGoodRecords(FactBase[RecordListing]):
    """The host's known-good records, oldest first (each pinned by a GC root). A
    record that cannot be read (corrupt, or not a record) is skipped and named, so
    one bad file never stops a status or a rollback."""

    def command(self) -> str:
        return _RECORD_LINES

    @staticmethod
    def default() -> RecordListing:
        return RecordListing([], [])

    def process(self, output: list[str]) -> RecordListing:
        return parse_record_lines(
            [line.split("=", 1)[1] for line in output if line.startswith("record=")]
        )


class PinRoots(FactBase[dict[str, str]]):
    """The host's nixify GC roots: pin name -> the closure it keeps alive ("" when the
    root dangles or its closure is gone from the store)."""

    def command(self) -> str:
        return (
            f'for r in {GCROOT_DIR}/*; do [ -L "$r" ] || continue; '
            't=$(readlink -f "$r" 2>/dev/null); [ -e "$t" ] || t=""; '
            'printf "%s\\t%s\\n" "${r##*/}" "$t"; done'
        )

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        roots: dict[str, str] = {}
        for line in output:
            name, _, target = line.partition("\t")
            if name.strip():
                roots[name.strip()] = target.strip()
        return roots
