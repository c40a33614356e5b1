"""YAML in and out as sops 3.11 reads and writes it (go-yaml v3 rules, indent 4).

Reading: PyYAML composes the node tree (structure, key order, scalar styles and
line marks); plain scalars are resolved by go-yaml v3's rules (YAML 1.2 core
plus its timestamp and legacy-bool handling), and ``#`` comment lines are put
back into the tree by their line and column, as sops keeps them.

Writing: block style, 4-space indentation with sequence items' contents two
columns in, no line folding, scalars quoted exactly when go-yaml would quote
them. Only what sops itself emits is covered: no anchors, no flow collections
other than ``{}`` and ``[]``.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

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

BEST_INDENT = 4


class YamlFormatError(ValueError):
    """YAML that is not a document sops can hold (message says where)."""


# --------------------------------------------------------------------- resolving

_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUES = {"true", "True", "TRUE"}
_FALSES = {"false", "False", "FALSE"}
_OLD_BOOLS = {
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
    "on", "On", "ON", "off", "Off", "OFF",
}  # fmt: skip
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_INT_PREFIXED = re.compile(r"^[-+]?0([xX][0-9a-fA-F_]+|[oO][0-7_]+|[bB][01_]+)$")
_INT_DEC = re.compile(r"^[-+]?[0-9][0-9_]*$")
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?$"
)
_SPECIAL_FLOATS = {
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}  # fmt: skip


def _parse_int(text: str) -> int | None:
    if "__" in text or text.endswith("_") or text.lstrip("+-").startswith("_"):
        return None
    clean = text.replace("_", "")
    if _INT_PREFIXED.match(text):
        value = int(clean, 0)
    elif _INT_DEC.match(text):
        digits = clean.lstrip("+-")
        if len(digits) > 1 and digits.startswith("0"):
            if not all(c in "01234567" for c in digits):
                return None
            value = int(digits, 8) * (-1 if clean.startswith("-") else 1)
        else:
            value = int(clean)
    else:
        return None
    if not -(2**63) <= value < 2**63:
        return None
    return value


def resolve_plain(text: str) -> Scalar:
    """The value go-yaml v3 gives a plain scalar when decoding into ``interface{}``."""
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    value = _parse_int(text)
    if value is not None:
        return value
    if _FLOAT.match(text):
        return float(text)
    if _TIMESTAMP.match(text):
        return Timestamp(_normalise_timestamp(text))
    return text


def _normalise_timestamp(text: str) -> str:
    """RFC 3339 form of a YAML timestamp, as Go's time.Time prints it."""
    m = re.match(
        r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{1,2}):"
        r"([0-9]{1,2})(\.[0-9]*)?(?:[ \t]*(Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?$",
        text,
    )
    if m is None:  # pragma: no cover - guarded by _TIMESTAMP
        return text
    y, mo, d, h, mi, s, frac, tz = m.groups()
    out = f"{y}-{int(mo):02d}-{int(d):02d}T{int(h or 0):02d}:{int(mi or 0):02d}:{int(s or 0):02d}"
    if frac and frac.rstrip("0") != ".":
        out += frac.rstrip("0")
    if tz is None or tz == "Z":
        return out + "Z"
    sign, rest = tz[0], tz[1:]
    hh, _, mm = rest.partition(":")
    return out + f"{sign}{int(hh):02d}:{int(mm or 0):02d}"


def resolves_to_string(text: str) -> bool:
    return isinstance(resolve_plain(text), str)


# ---------------------------------------------------------------------- reading


@dataclass
class _CommentLine:
    line: int
    column: int
    text: str


def _scalar_value(node: ScalarNode, lines: list[str]) -> Scalar:
    mark = node.start_mark
    explicit_tag = mark.line < len(lines) and lines[mark.line].startswith("!", mark.column)
    if node.tag == "tag:yaml.org,2002:binary":
        try:
            return str(base64.b64decode("".join(node.value.split())).decode())
        except (ValueError, UnicodeDecodeError):
            return str(node.value)
    if not node.style and not explicit_tag:  # plain: None (Python parser) or '' (libyaml)
        return resolve_plain(node.value)
    return str(node.value)


def _key_text(node: yaml.Node, where: str) -> str:
    if not isinstance(node, ScalarNode):
        raise YamlFormatError(f"{where}: line {node.start_mark.line + 1}: complex mapping key")
    return str(node.value)


class _Reader:
    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.text = text
        self.lines = text.splitlines()
        self.comments: list[_CommentLine] = []

    def collect_comments(self, root: yaml.Node | None) -> None:
        blocked: set[int] = set()
        if root is not None:
            self._block_scalar_lines(root, blocked)
        for number, line in enumerate(self.lines):
            if number in blocked:
                continue
            # a comment line, or a comment after sequence dashes (``- # note``)
            m = re.match(r"^ *(?:- +)*#", line)
            if m:
                column = m.end() - 1
                self.comments.append(_CommentLine(number, column, line[m.end() :]))

    def _block_scalar_lines(self, node: yaml.Node, out: set[int]) -> None:
        if isinstance(node, ScalarNode):
            if node.end_mark.line > node.start_mark.line:
                out.update(range(node.start_mark.line + 1, node.end_mark.line + 1))
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                self._block_scalar_lines(k, out)
                self._block_scalar_lines(v, out)
        elif isinstance(node, SequenceNode):
            for v in node.value:
                self._block_scalar_lines(v, out)

    def take(self, start: int, end: int, min_column: int = 0) -> list[Comment]:
        """Comments on lines [start, end) at column >= min_column, removed from the pool."""
        taken = [c for c in self.comments if start <= c.line < end and c.column >= min_column]
        for c in taken:
            self.comments.remove(c)
        return [Comment(c.text) for c in taken]

    def line_comment(self, node: yaml.Node) -> list[Comment]:
        """The ``# ...`` after a scalar on its last line, if any."""
        line, column = node.end_mark.line, node.end_mark.column
        if line >= len(self.lines):
            return []
        m = re.match(r"^[ \t]+#(.*)$", self.lines[line][column:])
        return [Comment(m.group(1))] if m else []

    def key_comment(self, knode: yaml.Node) -> list[Comment]:
        """The ``# ...`` after ``key:`` when the value starts on the next line."""
        line, column = knode.end_mark.line, knode.end_mark.column
        if line >= len(self.lines):
            return []
        m = re.match(r"^[ \t]*:[ \t]+#(.*)$", self.lines[line][column:])
        return [Comment(m.group(1))] if m else []

    def convert(self, node: yaml.Node, end_line: int, next_col: int = 0) -> Node:
        """``node`` as a tree; ``end_line``/``next_col``: where the next token after it is.

        A comment line goes before the next entry at its own level, unless it is
        indented deeper than the token that follows: then it trails the innermost
        block before it (go-yaml's foot comment), as sops reads it.
        """
        if isinstance(node, ScalarNode):
            return _scalar_value(node, self.lines)
        if isinstance(node, MappingNode):
            branch = Branch()
            pairs = node.value
            if not pairs:
                return branch
            column = pairs[0][0].start_mark.column
            for i, (knode, vnode) in enumerate(pairs):
                start = knode.start_mark.line
                branch.entries.extend(self.take(0, start + 1))
                if i + 1 < len(pairs):
                    nxt, ncol = pairs[i + 1][0].start_mark.line, column
                else:
                    nxt, ncol = end_line, next_col
                key = _key_text(knode, self.where)
                if isinstance(vnode, (MappingNode, SequenceNode)):
                    branch.entries.extend(self.key_comment(knode))
                value = self.convert(vnode, nxt, ncol)
                if not isinstance(value, (Branch, list)):
                    # a comment on the value's line goes before its key, as sops puts it
                    branch.entries.extend(self.line_comment(vnode))
                    branch.entries.extend(self.take(start, vnode.end_mark.line + 1, column))
                branch.entries.append((key, value))
            branch.entries.extend(self.take(0, end_line, next_col + 1))
            return branch
        if isinstance(node, SequenceNode):
            items: list[Item] = []
            seq = node.value
            if not seq:
                return items
            column = node.start_mark.column if node.flow_style is False else 0
            for i, vnode in enumerate(seq):
                start = vnode.start_mark.line
                items.extend(self.take(0, start))
                if i + 1 < len(seq):
                    nxt, ncol = seq[i + 1].start_mark.line, column
                else:
                    nxt, ncol = end_line, next_col
                value = self.convert(vnode, nxt, ncol)
                if not isinstance(value, (Branch, list)):
                    items.extend(self.line_comment(vnode))
                    items.extend(self.take(start, vnode.end_mark.line + 1, column))
                items.append(value)
            items.extend(self.take(0, end_line, next_col + 1))
            return items
        raise YamlFormatError(f"{self.where}: unsupported YAML node {type(node).__name__}")


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Untagged nodes keep these tags: a plain scalar's type is go-yaml's, by resolve_plain,
# not PyYAML's resolver (which would only cost time here).
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _StrictComposer:
    """PyYAML's node tree, composed from the parser's events, refusing the first anchor
    or alias (naming its key path) before it is expanded anywhere, and nesting deeper
    than ``MAX_DEPTH``. Only for text holding ``&`` or ``*`` (see ``compose``)."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.events: Any = _LOADER(text)  # the parser's event methods are untyped

    def fail(self, trail: list[Step], message: str) -> YamlFormatError:
        return YamlFormatError(f"{self.where}: {show_path(trail)}: {message}")

    def document(self) -> yaml.Node | None:
        ev = self.events
        ev.get_event()  # stream start
        if ev.check_event(yaml.StreamEndEvent):
            return None
        ev.get_event()  # document start
        node = self.node([], 0)
        ev.get_event()  # document end
        if not ev.check_event(yaml.StreamEndEvent):
            raise YamlFormatError(f"{self.where}: more than one YAML document")
        return node

    def node(self, trail: list[Step], depth: int) -> yaml.Node:
        event = self.events.get_event()
        if isinstance(event, yaml.AliasEvent):
            raise self.fail(trail, f"YAML alias *{event.anchor} (sops writes none)")
        if event.anchor is not None:
            raise self.fail(trail, f"YAML anchor &{event.anchor} (sops writes none)")
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag if event.tag not in (None, "!") else _STR
            start, end = _span(event)
            return ScalarNode(tag, event.value, start, end, event.style)
        if depth >= MAX_DEPTH:
            shown = trail[:6]
            raise YamlFormatError(
                f"{self.where}: {show_path(shown)}{'...' if shown != trail else ''}: "
                f"nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(event, yaml.SequenceStartEvent):
            tag = event.tag if event.tag not in (None, "!") else _SEQ
            seq = SequenceNode(tag, [], _span(event)[0], None, flow_style=event.flow_style)
            while not self.events.check_event(yaml.SequenceEndEvent):
                seq.value.append(self.node([*trail, len(seq.value)], depth + 1))
            seq.end_mark = self.events.get_event().end_mark
            return seq
        if isinstance(event, yaml.MappingStartEvent):
            tag = event.tag if event.tag not in (None, "!") else _MAP
            mapping = MappingNode(tag, [], _span(event)[0], None, flow_style=event.flow_style)
            while not self.events.check_event(yaml.MappingEndEvent):
                knode = self.node(trail, depth + 1)
                key = str(knode.value) if isinstance(knode, ScalarNode) else "?"
                mapping.value.append((knode, self.node([*trail, key], depth + 1)))
            mapping.end_mark = self.events.get_event().end_mark
            return mapping
        raise YamlFormatError(f"{self.where}: unexpected YAML event {type(event).__name__}")


def _span(event: Any) -> tuple[Any, Any]:
    """An event's start and end marks (libyaml's Mark type is not in PyYAML's stubs)."""
    return event.start_mark, event.end_mark


def check_size(text: str, where: str) -> None:
    if len(text) > MAX_BYTES:
        raise YamlFormatError(
            f"{where}: {len(text)} characters, larger than the {MAX_BYTES}-byte limit "
            "for a sops file"
        )


def compose(text: str, where: str = "<yaml>") -> yaml.Node | None:
    """The node tree of ``text`` (libyaml's parser when available), held to what sops
    writes: one document, string keys given once, no anchors, aliases or merge keys,
    at most ``MAX_DEPTH`` nested collections and ``MAX_BYTES`` of text. Refusals
    name the key path.

    Text without ``&`` and ``*`` can hold no anchor or alias, and libyaml composes it
    (the fast path every file sops writes takes); other text is composed event by
    event, so that an alias bomb is refused at its first anchor, never expanded.
    """
    check_size(text, where)
    try:
        if "&" in text or "*" in text:
            composer = _StrictComposer(text, where)
            try:
                root = composer.document()
            finally:
                composer.events.dispose()
        else:
            root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or ""
        if "nesting depth" in problem:  # libyaml's own depth bound (1000)
            mark = getattr(exc, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark is not None else ""
            raise YamlFormatError(f"{where}: {line}nested deeper than {MAX_DEPTH} levels") from exc
        raise YamlFormatError(f"{where}: invalid YAML: {exc}") from exc
    if root is not None:
        _check_nodes(root, where)
    return root


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Keys given twice, merge keys, complex keys and depth, walked without recursion."""
    stack: list[tuple[yaml.Node, list[Step], int]] = [(root, [], 0)]
    while stack:
        node, trail, depth = stack.pop()
        if isinstance(node, ScalarNode):
            continue
        if depth >= MAX_DEPTH:
            shown = trail[:6]
            raise YamlFormatError(
                f"{where}: {show_path(shown)}{'...' if shown != trail else ''}: "
                f"nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(node, SequenceNode):
            stack.extend((v, [*trail, i], depth + 1) for i, v in enumerate(node.value))
            continue
        seen: set[str] = set()
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                raise YamlFormatError(
                    f"{where}: {show_path(trail)}: line {knode.start_mark.line + 1}: "
                    "complex mapping key"
                )
            key = str(knode.value)
            if key == "<<":
                raise YamlFormatError(
                    f"{where}: {show_path([*trail, key])}: YAML merge key (sops writes none)"
                )
            if key in seen:
                raise YamlFormatError(
                    f"{where}: {show_path([*trail, key])}: key given twice "
                    f"(line {knode.start_mark.line + 1})"
                )
            seen.add(key)
            stack.append((vnode, [*trail, key], depth + 1))


def load(text: str, where: str = "<yaml>") -> Branch:
    """The document in ``text`` as a ``Branch`` with its comments (a mapping at top)."""
    return load_document(text, where)[0]


def load_document(text: str, where: str = "<yaml>") -> tuple[Branch, yaml.Node | None]:
    """``load``, plus the composed root node (for edits that keep the text)."""
    root = compose(text, where)
    reader = _Reader(text, where)
    reader.collect_comments(root)
    if root is None:
        branch = Branch()
        branch.entries.extend(reader.take(0, len(reader.lines) + 1))
        return branch, None
    if not isinstance(root, MappingNode):
        raise YamlFormatError(f"{where}: the document must be a mapping at the top level")
    tree = reader.convert(root, len(reader.lines) + 1, 0)
    assert isinstance(tree, Branch)
    tree.entries.extend(reader.take(0, len(reader.lines) + 1))  # the document's foot
    return tree, root


# ---------------------------------------------------------------------- writing


def _is_printable(ch: str) -> bool:
    o = ord(ch)
    # go-yaml's test: no NEL, nothing beyond the BMP (emoji are written as \U escapes)
    return (
        o == 0x0A
        or 0x20 <= o <= 0x7E
        or 0xA0 <= o <= 0xD7FF
        or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)
    )


@dataclass
class _Analysis:
    multiline: bool
    block_plain: bool
    single_quoted: bool
    block: bool


def _analyze(value: str) -> _Analysis:
    """libyaml's scalar analysis, for block context (go-yaml v3 emits no flow)."""
    if not value:
        return _Analysis(False, False, True, False)
    block_ind = value.startswith(("---", "..."))
    line_breaks = special = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = False
    previous_space = previous_break = False
    preceded_by_ws = True
    n = len(value)
    for i, ch in enumerate(value):
        followed_by_ws = i + 1 >= n or value[i + 1] in " \t\r\n\x85\u2028\u2029"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`" or (ch in "?:-" and followed_by_ws):
                block_ind = True
        elif (ch == ":" and followed_by_ws) or (ch == "#" and preceded_by_ws):
            block_ind = True
        if not _is_printable(ch) or (ch == "\ufeff"):
            special = True
        if ch in "\n\r\x85\u2028\u2029":
            line_breaks = True
        if ch == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        elif ch in "\n\r\x85\u2028\u2029":
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if previous_space:
                space_break = True
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in " \t\r\n\x85\u2028\u2029"
    block_plain = True
    single = True
    block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        block_plain = False
    if trailing_space:
        block = False
    if break_space:
        block_plain = single = False
    if space_break or special:
        block_plain = single = block = False
    if line_breaks:
        block_plain = False
    if block_ind:
        block_plain = False
    return _Analysis(line_breaks, block_plain, single, block)


def _double_quoted(value: str) -> str:
    out = ['"']
    escapes = {
        "\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v",
        "\f": "\\f", "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\",
        "\x85": "\\N", "\xa0": "\\_", "\u2028": "\\L", "\u2029": "\\P",
    }  # fmt: skip
    # go-yaml's BOM test looks at the start of the string, not at the character: a
    # string that starts with a BOM has every character escaped
    escape_all = value.startswith("\ufeff")
    for ch in value:
        if ch in escapes:
            out.append(escapes[ch])
        elif escape_all or not _is_printable(ch) or ch == "\ufeff":
            o = ord(ch)
            if o <= 0xFF:
                out.append(f"\\x{o:02X}")
            elif o <= 0xFFFF:
                out.append(f"\\u{o:04X}")
            else:
                out.append(f"\\U{o:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _needs_quotes(value: str) -> bool:
    return not resolves_to_string(value) or value in _OLD_BOOLS or bool(_BASE60.match(value))


# Shapes whose analysis is known without the character walk (ENC values, armor lines).
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,/+=\[\]:-]*(?<!:)")
_SAFE_LITERAL = re.compile(r"(?:[!-~](?:[ -~]*[!-~])?\n)+")


def scalar_inline(value: str, simple_key: bool = False) -> str | None:
    """A string written on one line, or None when it must be a literal block."""
    if _SAFE_PLAIN.fullmatch(value) and not _needs_quotes(value):
        return value
    if not simple_key and _SAFE_LITERAL.fullmatch(value):
        return None
    analysis = _analyze(value)
    if "\n" in value and not simple_key and analysis.block:
        return None
    if not _needs_quotes(value) and analysis.block_plain and not analysis.multiline:
        return value
    if _needs_quotes(value) or not analysis.single_quoted or analysis.multiline:
        return _double_quoted(value)
    return "'" + value.replace("'", "''") + "'"


def go_format_float_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 64) with go-yaml's names for inf and nan."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    x = len(ds) + exp - 1  # decimal exponent of the first digit
    prefix = "-" if sign else ""
    if x < -4 or x >= 6:  # Go's %g threshold for the shortest representation
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    return prefix + _fixed(ds, x)


def go_format_float_f(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    return ("-" if sign else "") + _fixed(ds, len(ds) + exp - 1)


def _fixed(ds: str, x: int) -> str:
    if x < 0:
        return "0." + "0" * (-x - 1) + ds
    if x + 1 >= len(ds):
        return ds + "0" * (x + 1 - len(ds))
    return ds[: x + 1] + "." + ds[x + 1 :]


def _scalar_text(value: Scalar) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_format_float_g(value)
    if isinstance(value, Timestamp):
        return value.text
    return scalar_inline(value)


def _next_indent(indent: int) -> int:
    return BEST_INDENT * ((indent + BEST_INDENT) // BEST_INDENT)


def _literal(value: str, indent: int) -> list[str]:
    if value.endswith("\n\n") or value == "\n":
        chomp = "+"
    elif value.endswith("\n"):
        chomp = ""
    else:
        chomp = "-"
    hint = str(BEST_INDENT) if value[:1] in (" ", "\n") else ""
    body = value[:-1] if value.endswith("\n") else value
    lines = [f"|{hint}{chomp}"]
    for line in body.split("\n"):
        lines.append(" " * indent + line if line else "")
    return lines


class _Writer:
    def __init__(self) -> None:
        self.out: list[str] = []

    def comment(self, c: Comment, indent: int) -> None:
        self.out.append(" " * indent + "#" + c.text)

    def value_after(self, prefix: str, value: Node, indent: int, in_seq: bool) -> None:
        """Write ``prefix`` (a key with ``:`` or a ``-``) then ``value``."""
        if in_seq and isinstance(value, (Branch, list)):
            # comments leading a collection that is a sequence item go before its dash
            entries = value.entries if isinstance(value, Branch) else value
            lead = 0
            while lead < len(entries) and isinstance(entries[lead], Comment):
                self.comment(entries[lead], indent)  # type: ignore[arg-type]
                lead += 1
            if lead:
                value = Branch(value.entries[lead:]) if isinstance(value, Branch) else value[lead:]
        if isinstance(value, Branch):
            if not value.entries:
                self.out.append(prefix + " {}")
                return
            if in_seq:
                self.mapping(value, indent + 2, first_prefix=prefix + " ")
            else:
                self.out.append(prefix)
                self.mapping(value, _next_indent(indent))
            return
        if isinstance(value, list):
            if not value:
                self.out.append(prefix + " []")
                return
            if in_seq:
                self.sequence(value, indent + 2, first_prefix=prefix + " ")
            else:
                self.out.append(prefix)
                self.sequence(value, _next_indent(indent))
            return
        text = _scalar_text(value)
        if text is None:
            assert isinstance(value, str)
            content_indent = indent + 2 if in_seq else _next_indent(indent)
            lines = _literal(value, content_indent)
            self.out.append(prefix + " " + lines[0])
            self.out.extend(lines[1:])
        else:
            self.out.append(prefix + " " + text)

    def mapping(self, branch: Branch, indent: int, first_prefix: str | None = None) -> None:
        for entry in branch.entries:
            lead = " " * indent
            if first_prefix is not None:
                lead = first_prefix
            if isinstance(entry, Comment):
                if first_prefix is not None:
                    self.out.append(first_prefix.rstrip())
                    first_prefix = None
                self.comment(entry, indent)
                continue
            first_prefix = None
            key, value = entry
            if "\n" in key and scalar_inline(key) is None:
                self.complex_key(lead, key, value, indent)
                continue
            key_text = scalar_inline(key, simple_key=True) or _double_quoted(key)
            self.value_after(lead + key_text + ":", value, indent, in_seq=False)

    def complex_key(self, lead: str, key: str, value: Node, indent: int) -> None:
        """A multi-line key, as go-yaml writes it: ``? |`` block, then ``:`` and the value."""
        inner = _next_indent(indent)
        lines = _literal(key, inner)
        self.out.append(lead + "? " + lines[0])
        self.out.extend(lines[1:])
        colon = " " * indent + ":"
        if isinstance(value, Branch) and value.entries:
            self.mapping(value, inner, first_prefix=colon + " " * (inner - indent - 1))
        elif isinstance(value, list) and value:
            self.sequence(value, inner, first_prefix=colon + " " * (inner - indent - 1))
        else:
            self.value_after(colon, value, indent, in_seq=False)

    def sequence(self, items: list[Item], indent: int, first_prefix: str | None = None) -> None:
        for item in items:
            lead = " " * indent
            if first_prefix is not None:
                lead = first_prefix
            if isinstance(item, Comment):
                if first_prefix is not None:
                    self.out.append(first_prefix.rstrip())
                    first_prefix = None
                self.comment(item, indent)
                continue
            first_prefix = None
            self.value_after(lead + "-", item, indent, in_seq=True)


def dump(tree: Branch) -> str:
    """``tree`` as sops writes YAML (no trailing document marker; ``{}`` when empty)."""
    if not tree.entries:
        return "{}\n"
    writer = _Writer()
    writer.mapping(tree, 0)
    return "\n".join(writer.out) + "\n"
