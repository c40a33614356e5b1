"""The structural allowance: age recipients where sops itself puts them.

A sops-encrypted file lists the recipients its data key is encrypted to in
its own metadata (``sops.age[].recipient``), and a ``.sops.yaml`` names the
recipients of each creation rule. Those are public keys in the place they
must be, so a recipient finding there is allowed *by rule*:

- in a file that parses as a sops file (YAML or JSON with a ``sops`` mapping
  holding ``mac`` and an ``age`` list), a ``recipient:`` line inside the
  ``sops`` block whose value is one of that list's recipients; in a sops
  dotenv file, a ``sops_age__list_N__map_recipient=`` line; in a sops INI
  file, an ``age__list_N__map_recipient =`` key inside its ``[sops]`` section;
- in a file named ``.sops.yaml``/``.sops.yml`` with ``creation_rules``, a
  recipient that one of the rules lists under ``age`` (directly, in
  ``key_groups``, or through a YAML alias), written after the
  ``creation_rules:`` key or as the anchor definition the rule refers to, and
  not inside a comment.

Nothing else is allowed there: identities, SSH key blobs, private-key blocks,
addresses, and recipients that are not in the metadata all stay findings.
The file is never excluded as a whole.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml

from nixify.leak.patterns import AGE_RECIPIENT

Raw = tuple[int, int, str]

_YAML_RECIPIENT_LINE = re.compile(
    rb"""^[ \t]*(?:-[ \t]+)?["']?recipient["']?[ \t]*:[ \t]*"""
    rb"""["']?(?P<v>[0-9a-z]+)["']?,?[ \t]*\r?$"""
)
_DOTENV_RECIPIENT_LINE = re.compile(
    rb"^sops_age__list_[0-9]+__map_recipient=(?P<v>[0-9a-z]+)\r?$"
)
_INI_RECIPIENT_LINE = re.compile(
    rb"^age__list_[0-9]+__map_recipient[ \t]*=[ \t]*(?P<v>[0-9a-z]+)[ \t]*\r?$"
)
_INI_SOPS_SECTION = re.compile(rb"^\[sops\][ \t]*\r?$", re.MULTILINE)
_INI_MAC = re.compile(rb"^mac[ \t]*=[ \t]*ENC\[", re.MULTILINE)
# A YAML anchor definition (`- &nas <recipient>` or `nas: &nas <recipient>`),
# the usual way a .sops.yaml names keys before its rules refer to them.
_ANCHOR_LINE = re.compile(
    rb"^[ \t]*(?:-[ \t]+|[\w.-]+:[ \t]+)&[\w.-]+[ \t]+[0-9a-z]+[ \t]*\r?$"
)
_SOPS_BLOCK = re.compile(rb'^sops:|^[ \t]*"sops"[ \t]*:|^\{[ \t]*"sops"', re.MULTILINE)
_CREATION_RULES = re.compile(rb"^creation_rules[ \t]*:", re.MULTILINE)
_SOPS_YAML_NAMES = (".sops.yaml", ".sops.yml")

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(data: bytes) -> Any:
    try:
        return yaml.load(data, Loader=_Loader)  # a safe loader (C if present)
    except yaml.YAMLError:
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _line_at(data: bytes, start: int) -> bytes:
    a = data.rfind(b"\n", 0, start) + 1
    b = data.find(b"\n", start)
    return data[a : b if b != -1 else len(data)]


def sops_recipients(doc: Any) -> set[str]:
    """The ``sops.age[].recipient`` values of a parsed sops file (empty if not one)."""
    if not isinstance(doc, dict):
        return set()
    meta = doc.get("sops")
    if not isinstance(meta, dict) or "mac" not in meta or not isinstance(meta.get("age"), list):
        return set()
    out = set()
    for entry in meta["age"]:
        if isinstance(entry, dict) and isinstance(entry.get("recipient"), str):
            out.add(entry["recipient"].strip())
    return out


def _split_age(value: Any) -> set[str]:
    if isinstance(value, str):
        return {v.strip() for v in value.replace("\n", ",").split(",") if v.strip()}
    if isinstance(value, list):
        out: set[str] = set()
        for v in value:
            out |= _split_age(v)
        return out
    return set()


def creation_rule_recipients(doc: Any) -> set[str]:
    """Recipients a ``.sops.yaml`` lists under its creation rules' ``age`` keys."""
    if not isinstance(doc, dict) or not isinstance(doc.get("creation_rules"), list):
        return set()
    out: set[str] = set()
    for rule in doc["creation_rules"]:
        if not isinstance(rule, dict):
            continue
        out |= _split_age(rule.get("age"))
        groups = rule.get("key_groups")
        if isinstance(groups, list):
            for group in groups:
                if isinstance(group, dict):
                    out |= _split_age(group.get("age"))
    return out


def _in_comment(data: bytes, start: int) -> bool:
    line_start = data.rfind(b"\n", 0, start) + 1
    return b"#" in data[line_start:start]


def _sops_config_allowed(data: bytes, raw: list[Raw]) -> list[Raw]:
    rules = _CREATION_RULES.search(data)
    if rules is None:
        return raw
    allowed = creation_rule_recipients(_load(data))
    kept = []
    for start, end, kind in raw:
        value = data[start:end]
        if (
            kind == AGE_RECIPIENT
            and value.decode() in allowed
            and not _in_comment(data, start)
            and (start > rules.start() or _ANCHOR_LINE.match(_line_at(data, start)))
        ):
            continue
        kept.append((start, end, kind))
    return kept


def _dotenv_allowed(data: bytes, raw: list[Raw]) -> list[Raw]:
    if not re.search(rb"^sops_mac=", data, re.MULTILINE):
        return raw
    kept = []
    for start, end, kind in raw:
        m = _DOTENV_RECIPIENT_LINE.match(_line_at(data, start)) if kind == AGE_RECIPIENT else None
        if m is None or m.group("v") != data[start:end]:
            kept.append((start, end, kind))
    return kept


def _ini_allowed(data: bytes, raw: list[Raw], section: int) -> list[Raw]:
    """A sops INI file: recipient keys inside its ``[sops]`` section."""
    if _INI_MAC.search(data, section) is None:
        return raw
    following = data.find(b"\n[", section + 1)
    end = following if following != -1 else len(data)
    kept = []
    for start, stop, kind in raw:
        if kind == AGE_RECIPIENT and section < start < end:
            m = _INI_RECIPIENT_LINE.match(_line_at(data, start))
            if m is not None and m.group("v") == data[start:stop]:
                continue
        kept.append((start, stop, kind))
    return kept


def allowed_by_structure(path: str, data: bytes, raw: list[Raw]) -> list[Raw]:
    """``raw`` findings minus the recipient lines sops metadata is made of."""
    if not any(kind == AGE_RECIPIENT for _, _, kind in raw):
        return raw
    if os.path.basename(path) in _SOPS_YAML_NAMES:
        return _sops_config_allowed(data, raw)
    if b"sops_age__list_" in data:
        return _dotenv_allowed(data, raw)
    section = _INI_SOPS_SECTION.search(data)
    if section is not None:
        return _ini_allowed(data, raw, section.start())
    block = _SOPS_BLOCK.search(data)
    if block is None:
        return raw
    recipients = sops_recipients(_load(data))
    if not recipients:
        return raw
    kept = []
    for start, end, kind in raw:
        if kind == AGE_RECIPIENT and start > block.start():
            m = _YAML_RECIPIENT_LINE.match(_line_at(data, start))
            value = data[start:end]
            if m is not None and m.group("v") == value and value.decode() in recipients:
                continue
        kept.append((start, end, kind))
    return kept
