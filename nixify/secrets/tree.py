"""The document tree of a sops file: ordered mappings, sequences, comments, scalars.

A mapping is a ``Branch`` of entries; an entry is either a ``(key, value)`` pair or
a ``Comment``. A sequence is a ``list`` whose items may also be ``Comment``s.
Scalars are ``str``, ``int``, ``float``, ``bool``, ``None`` and ``Timestamp``.
This mirrors how sops holds a document, so that comments survive encryption,
rekeying and decryption in their places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Comment:
    """A ``#`` comment line; ``text`` is everything after the ``#``."""

    text: str


@dataclass(frozen=True)
class Timestamp:
    """A YAML timestamp, kept as its RFC 3339 text (sops's ``type:time``)."""

    text: str


Scalar = Union[str, int, float, bool, None, Timestamp]  # noqa: UP007


@dataclass
class Branch:
    """An ordered mapping with comments among its entries."""

    entries: list[tuple[str, Node] | Comment] = field(default_factory=list)

    def items(self) -> Iterator[tuple[str, Node]]:
        for entry in self.entries:
            if not isinstance(entry, Comment):
                yield entry

    def get(self, key: str) -> Node | None:
        for k, v in self.items():
            if k == key:
                return v
        return None

    def keys(self) -> list[str]:
        return [k for k, _ in self.items()]


Node = Union[Branch, list["Node | Comment"], Scalar]  # noqa: UP007
Item = Union[Node, Comment]  # noqa: UP007

# f(value, path) -> new value; comments are passed as Comment, their path is the parent's.
LeafFunc = Callable[[Scalar | Comment, list[str]], "Scalar | Comment"]


def map_leaves(node: Node, func: LeafFunc, path: list[str] | None = None) -> Node:
    """A copy of ``node`` with every scalar and comment replaced by ``func`` (tree order)."""
    path = [] if path is None else path
    if isinstance(node, Branch):
        out = Branch()
        for entry in node.entries:
            if isinstance(entry, Comment):
                new = func(entry, path)
                out.entries.append(new if isinstance(new, Comment) else Comment(str(new)))
            else:
                key, value = entry
                out.entries.append((key, map_leaves(value, func, [*path, key])))
        return out
    if isinstance(node, list):
        items: list[Node | Comment] = []
        for item in node:
            if isinstance(item, Comment):
                new = func(item, path)
                items.append(new if isinstance(new, Comment) else Comment(str(new)))
            elif isinstance(item, (Branch, list)):
                items.append(map_leaves(item, func, path))
            else:
                # a sequence item may turn into a comment: sops keeps comments among
                # sequence items as items of type comment
                items.append(func(item, path))
        return items
    result = func(node, path)
    if isinstance(result, Comment):
        raise TypeError("a scalar cannot become a comment")
    return result


# Bounds every reader holds a sops file to: a file is refused past them, not parsed.
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64  # nested mappings and sequences

# One key path element: a mapping key, or a sequence index.
Step = Union[str, int]  # noqa: UP007
# f(value, trail, comments, is_comment) -> new value. ``comments`` is sops's comment
# stack: per enclosing collection, the comments since its last non-comment entry.
StackLeafFunc = Callable[[Scalar | Comment, list[Step], list[list[str]], bool], "Scalar | Comment"]


def show_path(trail: list[Step]) -> str:
    """A key path as messages show it: ``db:password``, ``hosts[1]``, ``(top level)``."""
    out = ""
    for step in trail:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += (":" if out else "") + step
    return out or "(top level)"


def aad_path(trail: list[Step]) -> list[str]:
    """The keys of a trail (sops's path: sequence indexes add nothing)."""
    return [s for s in trail if isinstance(s, str)]


def walk_leaves(
    node: Node,
    func: StackLeafFunc,
    trail: list[Step] | None = None,
    comments: list[list[str]] | None = None,
) -> Node:
    """``map_leaves`` as sops walks a tree: each leaf also sees the comment stack
    (what ``encrypted_comment_regex``/``unencrypted_comment_regex`` match against),
    and its trail keeps sequence indexes for messages. ``None`` is not a leaf."""
    trail = [] if trail is None else trail
    comments = [] if comments is None else comments
    if isinstance(node, Branch):
        stack = [*comments, []]
        out = Branch()
        for entry in node.entries:
            if isinstance(entry, Comment):
                stack[-1].append(entry.text)
                new = func(entry, trail, stack, True)
                out.entries.append(new if isinstance(new, Comment) else Comment(str(new)))
                continue
            key, value = entry
            out.entries.append((key, walk_leaves(value, func, [*trail, key], stack)))
            stack[-1] = []
        return out
    if isinstance(node, list):
        stack = [*comments, []]
        items: list[Node | Comment] = []
        for i, item in enumerate(node):
            if isinstance(item, Comment):
                stack[-1].append(item.text)
                new = func(item, trail, stack, True)
                items.append(new if isinstance(new, Comment) else Comment(str(new)))
                continue
            if isinstance(item, (Branch, list)):
                items.append(walk_leaves(item, func, [*trail, i], stack))
            elif item is None:
                items.append(None)
            else:
                # a sequence item may turn into a comment (an encrypted comment among items)
                items.append(func(item, [*trail, i], stack, False))
            stack[-1] = []
        return items
    if node is None:
        return None
    result = func(node, trail, comments, False)
    if isinstance(result, Comment):
        raise TypeError("a scalar cannot become a comment")
    return result
