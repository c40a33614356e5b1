"""JSON in and out as sops 3.11 reads and writes it.

sops holds JSON numbers as float64, writes with a tab indent, escapes ``<``,
``>``, ``&``, U+2028 and U+2029 as Go's encoding/json does, formats floats like
Go (``1e+21``, ``1e-7``, ``100``) and ends the document with a newline.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from nixify.secrets.tree import (
    MAX_BYTES,
    MAX_DEPTH,
    Branch,
    Comment,
    Item,
    Node,
    Scalar,
    Step,
    Timestamp,
    show_path,
)
from nixify.secrets.yamlio import go_format_float_f


class JsonFormatError(ValueError):
    """JSON that sops cannot hold (not an object at the top, bad syntax)."""


def _convert(value: Any, where: str, trail: list[Step], depth: int = 0) -> Node:
    if isinstance(value, (_Pairs, list)) and depth >= MAX_DEPTH:
        shown = trail[:6]
        raise JsonFormatError(
            f"{where}: {show_path(shown)}{'...' if shown != trail else ''}: "
            f"nested deeper than {MAX_DEPTH} levels"
        )
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        entries: list[tuple[str, Node] | Comment] = []
        for k, v in value.pairs:
            if k in seen:
                raise JsonFormatError(f"{where}: {show_path([*trail, k])}: key given twice")
            seen.add(k)
            entries.append((k, _convert(v, where, [*trail, k], depth + 1)))
        return Branch(entries)
    if isinstance(value, list):
        return [_convert(v, where, [*trail, i], depth + 1) for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    raise JsonFormatError(f"{where}: {show_path(trail)}: unsupported JSON value {value!r}")


class _Pairs:
    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load(text: str, where: str = "<json>") -> Branch:
    """The JSON object in ``text`` as a Branch; numbers become floats, as in sops.

    Stricter than sops: a key given twice, ``NaN``/``Infinity``, nesting deeper
    than ``MAX_DEPTH`` and text over ``MAX_BYTES`` are refused (messages name the
    key path where there is one)."""
    if len(text) > MAX_BYTES:
        raise JsonFormatError(
            f"{where}: {len(text)} characters, larger than the {MAX_BYTES}-byte limit "
            "for a sops file"
        )
    try:
        data = json.loads(
            text, object_pairs_hook=_Pairs, parse_int=float, parse_constant=_no_constant
        )
    except RecursionError:
        raise JsonFormatError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise JsonFormatError(f"{where}: invalid JSON: {exc}") from exc
    if not isinstance(data, _Pairs):
        raise JsonFormatError(f"{where}: the document must be a JSON object")
    tree = _convert(data, where, [])
    assert isinstance(tree, Branch)
    return tree


def go_json_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise JsonFormatError(f"JSON cannot hold {value}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if 1e-6 <= abs(value) < 1e21:
        return go_format_float_f(value)
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    x = len(ds) + exp - 1
    mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if x < 0 else '+'}{abs(x)}"


def go_json_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _scalar(value: Scalar) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_json_float(value)
    if isinstance(value, Timestamp):
        return go_json_string(value.text)
    return go_json_string(value)


def _write(node: Node, depth: int, out: list[str]) -> None:
    pad = "\t" * (depth + 1)
    if isinstance(node, Branch):
        entries = list(node.items())
        if not entries:
            out.append("{}")
            return
        out.append("{\n")
        for i, (key, value) in enumerate(entries):
            out.append(f"{pad}{go_json_string(key)}: ")
            _write(value, depth + 1, out)
            out.append(",\n" if i + 1 < len(entries) else "\n")
        out.append("\t" * depth + "}")
        return
    if isinstance(node, list):
        items: list[Item] = [i for i in node if not isinstance(i, Comment)]
        if not items:
            out.append("[]")
            return
        out.append("[\n")
        for i, item in enumerate(items):
            out.append(pad)
            assert not isinstance(item, Comment)
            _write(item, depth + 1, out)
            out.append(",\n" if i + 1 < len(items) else "\n")
        out.append("\t" * depth + "]")
        return
    out.append(_scalar(node))


def dump(tree: Branch) -> str:
    """``tree`` as sops writes JSON."""
    out: list[str] = []
    _write(tree, 0, out)
    return "".join(out) + "\n"
