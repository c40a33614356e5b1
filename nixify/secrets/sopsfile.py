"""The sops file format (3.11, age key source) in Python.

One random 32-byte data key per file; each age recipient holds that key in an
armored age file (``sops.age[].recipient/enc``). Each value is
``ENC[AES256_GCM,data:,iv:,tag:,type:]`` (AES-256-GCM, 32-byte IV, AAD = the
key path joined by ``:`` plus a trailing ``:``). The MAC is SHA-512 over the
plaintext leaves in tree order (comments excluded), upper-case hex, encrypted
with AAD = ``lastmodified``.

``updatekeys`` re-encrypts the same data key to a new recipient set and leaves
the rest of the file alone: for YAML only the ``age:`` block of the metadata
is rewritten, every other byte is kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyrage
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nixify.errors import ConfigError
from nixify.secrets import jsonio, yamlio
from nixify.secrets.keys import find_identities
from nixify.secrets.tree import (
    MAX_BYTES,
    Branch,
    Comment,
    Node,
    Scalar,
    Step,
    Timestamp,
    aad_path,
    show_path,
    walk_leaves,
)

Format = Literal["yaml", "json"]
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
SOPS_VERSION = "3.11.0"
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
UNSUPPORTED_SUFFIXES = {".env": "dotenv", ".ini": "INI", ".bin": "binary"}
# sops starts a mac_only_encrypted file's MAC with these 32 bytes (SHA-256 of "sops"), so
# that the flag cannot be added or removed without the MAC noticing.
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
AGE_HEADER = b"age-encryption.org/v1\n"
RULE_FIELDS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
)
# Key sources sops knows and nixify does not manage (it keys files to age recipients only).
OTHER_KEY_SOURCES = (
    "pgp",
    "kms",
    "gcp_kms",
    "azure_kv",
    "hc_vault",
    "key_groups",
    "shamir_threshold",
)
METADATA_FIELDS = frozenset(
    {
        "age",
        "lastmodified",
        "mac",
        "version",
        "mac_only_encrypted",
        *RULE_FIELDS,
        *OTHER_KEY_SOURCES,
    }
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_ENC = re.compile(r"^ENC\[AES256_GCM,data:([^,]*),iv:([^,]*),tag:([^,]*),type:([a-z]+)\]$")


class SopsError(ConfigError):
    """A sops file nixify refuses: names the file and, where known, the key path."""


def format_of(path: Path | str) -> Format:
    """sops's choice of store by extension: ``.json`` is JSON, everything else YAML."""
    return "json" if str(path).endswith(".json") else "yaml"


# ------------------------------------------------------------------ age armor


def armor(data: bytes) -> str:
    """age's ASCII armor: base64 in 64-column lines between the markers, newline ended."""
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def dearmor(text: str) -> bytes:
    body = text.strip()
    if not body.startswith(ARMOR_BEGIN) or not body.endswith(ARMOR_END):
        raise ValueError("not an armored age file")
    inner = body[len(ARMOR_BEGIN) : -len(ARMOR_END)]
    return base64.b64decode("".join(inner.split()), validate=True)


def encrypt_data_key(data_key: bytes, recipient: str) -> str:
    try:
        rcpt = pyrage.x25519.Recipient.from_str(recipient)
    except Exception as exc:
        raise SopsError(f"not an age X25519 recipient: {recipient!r}") from exc
    return armor(pyrage.encrypt(data_key, [rcpt]))


# ------------------------------------------------------------- value crypto


def _scalar_bytes(value: Scalar | Comment) -> tuple[str, bytes]:
    if isinstance(value, Comment):
        return "comment", value.text.encode()
    if isinstance(value, bool):
        return "bool", b"True" if value else b"False"
    if isinstance(value, int):
        return "int", str(value).encode()
    if isinstance(value, float):
        return "float", yamlio.go_format_float_f(value).encode()
    if isinstance(value, Timestamp):
        return "time", value.text.encode()
    if isinstance(value, str):
        return "str", value.encode()
    raise TypeError(f"cannot encrypt {value!r}")


def encrypt_value(value: Scalar | Comment, key: bytes, aad: str, iv: bytes | None = None) -> str:
    """``ENC[...]`` of one value (a fresh random 32-byte IV unless given)."""
    kind, data = _scalar_bytes(value)
    iv = os.urandom(32) if iv is None else iv
    sealed = AESGCM(key).encrypt(iv, data, aad.encode())
    ct, tag = sealed[:-16], sealed[-16:]
    b = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b(ct).decode()},iv:{b(iv).decode()},"
        f"tag:{b(tag).decode()},type:{kind}]"
    )


def is_encrypted_value(value: object) -> bool:
    return isinstance(value, str) and _ENC.match(value) is not None


def decrypt_value(enc: str, key: bytes, aad: str) -> Scalar | Comment:
    """The value inside ``ENC[...]``; ValueError when it does not authenticate."""
    m = _ENC.match(enc)
    if m is None:
        raise ValueError("not an ENC[AES256_GCM,...] value")
    try:
        ct, iv, tag = (base64.b64decode(g, validate=True) for g in m.group(1, 2, 3))
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in encrypted value: {exc}") from exc
    if len(tag) != 16 or not iv:
        raise ValueError("bad IV or tag length")
    try:
        plain = AESGCM(key).decrypt(iv, ct + tag, aad.encode())
    except InvalidTag as exc:
        raise ValueError("authentication failed (corrupt ciphertext or wrong key)") from exc
    kind = m.group(4)
    text = plain.decode()
    if kind == "str":
        return text
    if kind == "comment":
        return Comment(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text not in _GO_BOOLS:
            raise ValueError("type:bool holds something that is not a boolean")
        return _GO_BOOLS[text]
    if kind == "time":
        return Timestamp(text)
    if kind == "bytes":
        return text
    raise ValueError(f"unknown value type {kind!r}")


def mac_input(value: Scalar | Comment) -> bytes:
    """The bytes a leaf adds to the MAC (nothing for comments and nulls)."""
    if isinstance(value, Comment) or value is None:
        return b""
    return _scalar_bytes(value)[1]


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class AgeStanza:
    """One ``sops.age[]`` entry: the recipient and the data key armored to it."""

    recipient: str
    enc: str


@dataclass(frozen=True)
class EncryptionRules:
    """Which leaves sops encrypts (the metadata's suffix/regex fields)."""

    unencrypted_suffix: str | None = DEFAULT_UNENCRYPTED_SUFFIX
    encrypted_suffix: str | None = None
    unencrypted_regex: str | None = None
    encrypted_regex: str | None = None
    unencrypted_comment_regex: str | None = None
    encrypted_comment_regex: str | None = None
    mac_only_encrypted: bool = False

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> EncryptionRules:
        """The rules of a file's (already checked) metadata: at most one rule; none
        means the default ``_unencrypted`` suffix, as sops reads it."""
        has_rule = any(meta.get(k) for k in RULE_FIELDS)
        return cls(
            unencrypted_suffix=meta.get("unencrypted_suffix")
            or (None if has_rule else DEFAULT_UNENCRYPTED_SUFFIX),
            encrypted_suffix=meta.get("encrypted_suffix") or None,
            unencrypted_regex=meta.get("unencrypted_regex") or None,
            encrypted_regex=meta.get("encrypted_regex") or None,
            unencrypted_comment_regex=meta.get("unencrypted_comment_regex") or None,
            encrypted_comment_regex=meta.get("encrypted_comment_regex") or None,
            mac_only_encrypted=meta.get("mac_only_encrypted") is True,
        )

    def metadata_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in RULE_FIELDS:
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out

    def should_encrypt(
        self, path: Sequence[str], comments: Sequence[Sequence[str]], is_comment: bool
    ) -> bool:
        """Whether sops encrypts a leaf at ``path`` (a comment's path is its parent's).

        ``comments`` is sops's comment stack: per enclosing collection, the comments
        since its last non-comment entry (the leaf itself last, when it is one).
        The comment regexes match against it, so a marker comment decides for what
        follows it; the marker itself stays in the clear.
        """
        encrypted = True
        if self.unencrypted_suffix and any(k.endswith(self.unencrypted_suffix) for k in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(k.endswith(self.encrypted_suffix) for k in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, k) for k in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, k) for k in path)
        if self.unencrypted_comment_regex and any(
            re.search(self.unencrypted_comment_regex, c) for level in comments for c in level
        ):
            encrypted = False
        if self.encrypted_comment_regex:
            encrypted = False
            last = len(comments) - 1
            for i, level in enumerate(comments):
                for j, c in enumerate(level):
                    if is_comment and i == last and j == len(level) - 1:
                        continue  # the marker line itself
                    if re.search(self.encrypted_comment_regex, c):
                        return True
        return encrypted


def _aad(path: Sequence[str]) -> str:
    return ":".join(path) + ":"


# ---------------------------------------------------------------- the file


@dataclass
class SopsFile:
    """A parsed sops file: the encrypted tree, its metadata and its original text."""

    where: str
    fmt: Format
    text: str
    tree: Branch  # the document without the ``sops`` key, still encrypted
    metadata: dict[str, Any]
    age: list[AgeStanza] = field(default_factory=list)
    root: yaml.Node | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------ reading

    @classmethod
    def load(cls, path: Path | str) -> SopsFile:
        p = Path(path)
        if p.suffix in UNSUPPORTED_SUFFIXES:
            raise SopsError(
                f"{p}: sops {UNSUPPORTED_SUFFIXES[p.suffix]} files are not handled by nixify "
                "(YAML and JSON only); keep this secret as .yaml or .json"
            )
        try:
            with p.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise SopsError(f"{p}: cannot read: {exc.strerror}") from exc
        if len(data) > MAX_BYTES:
            raise SopsError(f"{p}: larger than the {MAX_BYTES}-byte limit for a sops file")
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise SopsError(f"{p}: not UTF-8 text") from exc
        return cls.parse(text, format_of(p), str(p))

    @classmethod
    def parse(cls, text: str, fmt: Format, where: str) -> SopsFile:
        """The file's structure, checked as strictly as sops reads it or more (see
        ``yamlio.compose``, ``jsonio.load``, ``_check_metadata``); no key needed."""
        root: yaml.Node | None = None
        try:
            if fmt == "yaml":
                full, root = yamlio.load_document(text, where)
            else:
                full = jsonio.load(text, where)
        except ValueError as exc:
            raise SopsError(str(exc)) from exc
        sops_node = full.get("sops")
        if not isinstance(sops_node, Branch):
            raise SopsError(f"{where}: not a sops file (no `sops` metadata mapping)")
        tree = Branch([e for e in full.entries if isinstance(e, Comment) or e[0] != "sops"])
        age = _check_metadata(sops_node, where)
        metadata = _plain(sops_node)
        assert isinstance(metadata, dict)
        return cls(where, fmt, text, tree, metadata, age, root)

    @property
    def recipients(self) -> list[str]:
        return [s.recipient for s in self.age]

    @property
    def rules(self) -> EncryptionRules:
        return EncryptionRules.from_metadata(self.metadata)

    def data_key(self, identities: Iterable[pyrage.x25519.Identity]) -> bytes:
        """The data key, from the first stanza one of ``identities`` opens."""
        ids = list(identities)
        if not ids:
            raise SopsError(f"{self.where}: no age identity to decrypt with")
        for i, stanza in enumerate(self.age):
            try:
                sealed = dearmor(stanza.enc)
            except (ValueError, binascii.Error) as exc:
                raise SopsError(f"{self.where}: sops:age[{i}]:enc: {exc}") from exc
            try:
                key = bytes(pyrage.decrypt(sealed, ids))
            except pyrage.DecryptError:
                continue
            if len(key) != 32:
                raise SopsError(f"{self.where}: sops:age[{i}]:enc: the data key is not 32 bytes")
            return key
        raise SopsError(
            f"{self.where}: none of the {len(ids)} identities opens any of the "
            f"{len(self.age)} age recipients of this file"
        )

    def decrypt_tree(self, key: bytes) -> Branch:
        """The plaintext tree; SopsError naming the key path or the MAC on failure.

        A leaf is read as sops reads it: encrypted exactly where the file's rules
        say so (an ``ENC[...]`` there, or an empty string), plaintext elsewhere
        (kept as written, even when it looks encrypted). Stricter than sops: a
        plaintext comment where the rules encrypt comments is refused, an
        ``ENC[...]`` comment must decrypt, and in a ``mac_only_encrypted`` file a
        plaintext value (which no MAC covers) is refused.
        """
        rules = self.rules
        digest = hashlib.sha512()
        if rules.mac_only_encrypted:
            digest.update(MAC_ONLY_ENCRYPTED_INIT)
        unauthenticated: list[str] = []

        def leaf(
            value: Scalar | Comment, trail: list[Step], comments: list[list[str]], is_comment: bool
        ) -> Scalar | Comment:
            path = aad_path(trail)
            encrypted = rules.should_encrypt(path, comments, is_comment)
            if isinstance(value, Comment):
                if not encrypted or value.text == "":
                    return value
                if value.text.startswith("ENC["):
                    return self._open(value.text, key, trail)
                raise self._refuse(
                    trail, "a comment is not encrypted, but the file's rules encrypt comments"
                )
            if not encrypted:
                if not rules.mac_only_encrypted:
                    digest.update(mac_input(value))
                elif value is not None and value != "":
                    unauthenticated.append(show_path(trail))
                return value
            if value == "":
                return value  # sops leaves an empty string as it is, in every file
            if not isinstance(value, str) or not value.startswith("ENC["):
                raise self._refuse(
                    trail,
                    "value is not encrypted, but the file's rules say it must be "
                    "(plaintext written into the file by hand?)",
                )
            plain = self._open(value, key, trail)
            digest.update(mac_input(plain))
            return plain

        tree = walk_leaves(self.tree, leaf)
        assert isinstance(tree, Branch)
        self._check_mac(key, digest.hexdigest().upper())
        if unauthenticated:
            raise SopsError(
                f"{self.where}: {', '.join(unauthenticated)}: plaintext not covered by the MAC "
                "(mac_only_encrypted): anyone could have written it, so nixify refuses the file"
            )
        return tree

    def _refuse(self, trail: list[Step], message: str) -> SopsError:
        return SopsError(f"{self.where}: {show_path(trail)}: {message}")

    def _open(self, enc: str, key: bytes, trail: list[Step]) -> Scalar | Comment:
        try:
            return decrypt_value(enc, key, _aad(aad_path(trail)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SopsError(
                f"{self.where}: cannot decrypt value at {show_path(trail)}: {exc}"
            ) from exc

    def _check_mac(self, key: bytes, computed: str) -> None:
        try:
            stored = decrypt_value(self.metadata["mac"], key, self.metadata["lastmodified"])
        except (ValueError, UnicodeDecodeError) as exc:
            raise SopsError(f"{self.where}: sops:mac: cannot decrypt: {exc}") from exc
        if not isinstance(stored, str) or not hmac.compare_digest(stored, computed):
            raise SopsError(
                f"{self.where}: MAC mismatch: the file was modified outside sops "
                "or is corrupt; refusing it"
            )

    def decrypt(self, identities: Iterable[pyrage.x25519.Identity]) -> Branch:
        return self.decrypt_tree(self.data_key(identities))

    def plaintext(self, identities: Iterable[pyrage.x25519.Identity]) -> str:
        """The document as ``sops decrypt`` prints it."""
        return dump_tree(self.decrypt(identities), self.fmt)

    # ----------------------------------------------------------- writing

    def with_recipients(
        self, recipients: Sequence[str], key: bytes, keep: bool = True
    ) -> str | None:
        """The file's text keyed to exactly ``recipients`` (the updatekeys result).

        Stanzas of recipients already present are kept as they are when ``keep``;
        new ones get the same data key. None when the recipients are already
        exactly ``recipients`` (in that order): nothing to write.
        """
        if list(recipients) == self.recipients and keep:
            return None
        existing = {s.recipient: s for s in self.age}
        stanzas = [
            existing[r] if keep and r in existing else AgeStanza(r, encrypt_data_key(key, r))
            for r in recipients
        ]
        if self.fmt == "yaml":
            return _replace_yaml_age(self.text, stanzas, self.where, self.root)
        meta = dict(self.metadata)
        meta["age"] = [{"recipient": s.recipient, "enc": s.enc} for s in stanzas]
        return jsonio.dump(_with_metadata(self.tree, meta))

    def rotated(
        self, identities: Iterable[pyrage.x25519.Identity], recipients: Sequence[str]
    ) -> str:
        """The file re-encrypted under a fresh data key to ``recipients`` (sops rotate)."""
        plain = self.decrypt(identities)
        return encrypt_tree(plain, self.fmt, recipients, self.rules)


def _check_metadata(sops_node: Branch, where: str) -> list[AgeStanza]:
    """Refuse metadata sops would refuse or that nixify cannot vouch for; the age stanzas.

    Unknown fields, key sources other than age, more than one encryption rule,
    a ``mac_only_encrypted`` that is not a boolean, a ``lastmodified`` that is not
    RFC 3339 text, a missing or malformed MAC, and a stanza whose ``enc`` is not
    an armored age file are all refused, naming the field.
    """

    def fail(trail: list[Step], message: str) -> SopsError:
        return SopsError(f"{where}: {show_path(['sops', *trail])}: {message}")

    fields = dict(sops_node.items())
    for name, value in fields.items():
        if name not in METADATA_FIELDS:
            raise fail([name], "unknown metadata field (sops 3.11 writes no such field)")
        if name in OTHER_KEY_SOURCES and value not in (None, [], 0):
            raise fail([name], "key sources other than age are not supported by nixify (age only)")
    rules = [name for name in RULE_FIELDS if fields.get(name) not in (None, "")]
    for name in rules:
        value = fields[name]
        if not isinstance(value, str):
            raise fail([name], "expected a string")
        if name.endswith("_regex"):
            try:
                re.compile(value)
            except re.error as exc:
                raise fail([name], f"not a regular expression: {exc}") from exc
    if len(rules) > 1:
        raise SopsError(
            f"{where}: sops: more than one of {', '.join(RULE_FIELDS)} "
            f"({', '.join(rules)}); sops refuses such a file"
        )
    if "mac_only_encrypted" in fields and not isinstance(fields["mac_only_encrypted"], bool):
        raise fail(["mac_only_encrypted"], "expected true or false")
    lastmodified = fields.get("lastmodified")
    if lastmodified is None:
        raise fail(["lastmodified"], "missing")
    if not isinstance(lastmodified, str) or not _RFC3339.match(lastmodified):
        raise fail(["lastmodified"], "not an RFC 3339 time")
    mac = fields.get("mac")
    if mac is None:
        raise fail(["mac"], "missing")
    if not isinstance(mac, str) or not _ENC.match(mac):
        raise fail(["mac"], "not an ENC[AES256_GCM,...] value")
    if "version" in fields and not isinstance(fields["version"], str):
        raise fail(["version"], "expected a string")
    stanzas = fields.get("age")
    if not isinstance(stanzas, list) or not stanzas:
        raise fail(["age"], "no age recipient")
    age: list[AgeStanza] = []
    for i, entry in enumerate(stanzas):
        pairs = (
            {e[0]: e[1] for e in entry.entries if not isinstance(e, Comment)}
            if isinstance(entry, Branch)
            else {}
        )
        if len(pairs) != 2 or "recipient" not in pairs or "enc" not in pairs:
            raise fail(["age", i], "expected exactly recipient and enc")
        recipient, enc = pairs["recipient"], pairs["enc"]
        if not isinstance(recipient, str) or not recipient:
            raise fail(["age", i, "recipient"], "expected an age recipient")
        if not isinstance(enc, str):
            raise fail(["age", i, "enc"], "expected an armored age file")
        try:
            sealed = dearmor(enc)
        except (ValueError, binascii.Error) as exc:
            raise fail(["age", i, "enc"], f"not an armored age file ({exc})") from exc
        if not sealed.startswith(AGE_HEADER):
            raise fail(["age", i, "enc"], "not an age file (no age-encryption.org/v1 header)")
        age.append(AgeStanza(recipient, enc))
    return age


def _plain(node: Node) -> Any:
    if isinstance(node, Branch):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node if not isinstance(v, Comment)]
    if isinstance(node, Timestamp):
        return node.text
    return node


def dump_tree(tree: Branch, fmt: Format) -> str:
    return yamlio.dump(tree) if fmt == "yaml" else jsonio.dump(tree)


def _to_node(value: Any) -> Node:
    if isinstance(value, dict):
        return Branch([(k, _to_node(v)) for k, v in value.items()])
    if isinstance(value, list):
        return [_to_node(v) for v in value]
    return value  # type: ignore[no-any-return]


def _with_metadata(tree: Branch, meta: dict[str, Any]) -> Branch:
    return Branch([*tree.entries, ("sops", _to_node(meta))])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encrypt_tree(
    plain: Branch,
    fmt: Format,
    recipients: Sequence[str],
    rules: EncryptionRules | None = None,
    *,
    lastmodified: str | None = None,
    data_key: bytes | None = None,
) -> str:
    """A new sops document: ``plain`` encrypted under a fresh data key to ``recipients``."""
    if not recipients:
        raise SopsError("refusing to encrypt to an empty recipient set")
    rules = rules or EncryptionRules()
    key = data_key or os.urandom(32)
    lastmodified = lastmodified or _now()
    digest = hashlib.sha512()
    if rules.mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_INIT)

    def leaf(
        value: Scalar | Comment, trail: list[Step], comments: list[list[str]], is_comment: bool
    ) -> Scalar | Comment:
        path = aad_path(trail)
        encrypted = rules.should_encrypt(path, comments, is_comment)
        if not is_comment and (not rules.mac_only_encrypted or encrypted):
            digest.update(mac_input(value))
        if not encrypted or value is None or value == "":
            return value
        if isinstance(value, Comment):
            return Comment(encrypt_value(value, key, _aad(path))) if value.text else value
        return encrypt_value(value, key, _aad(path))

    tree = _sequence_comments_as_items(walk_leaves(plain, leaf))
    assert isinstance(tree, Branch)
    meta: dict[str, Any] = {
        "age": [{"recipient": r, "enc": encrypt_data_key(key, r)} for r in recipients],
        "lastmodified": lastmodified,
        "mac": encrypt_value(digest.hexdigest().upper(), key, lastmodified),
        **rules.metadata_fields(),
        "version": SOPS_VERSION,
    }
    doc = _with_metadata(tree, meta)
    if fmt == "json":
        return jsonio.dump(doc)
    return yamlio.dump(doc)


def _sequence_comments_as_items(node: Node) -> Node:
    """Encrypted comments among sequence items become ``- ENC[...]`` items, as sops writes."""
    if isinstance(node, Branch):
        return Branch(
            [e if isinstance(e, Comment) else (e[0], _sequence_comments_as_items(e[1]))
             for e in node.entries]
        )  # fmt: skip
    if isinstance(node, list):
        return [
            i.text
            if isinstance(i, Comment) and is_encrypted_value(i.text)
            else i
            if isinstance(i, Comment)
            else _sequence_comments_as_items(i)
            for i in node
        ]
    return node


def _replace_yaml_age(
    text: str, stanzas: Sequence[AgeStanza], where: str, root: yaml.Node | None = None
) -> str:
    """``text`` with the lines of ``sops.age`` replaced by ``stanzas``; all else kept."""
    if root is None:
        root = yamlio.compose(text, where)
    if not isinstance(root, yaml.MappingNode):
        raise SopsError(f"{where}: not a YAML mapping")
    sops_value = None
    for knode, vnode in root.value:
        if knode.value == "sops":
            sops_value = vnode
    if sops_value is None or not isinstance(sops_value, yaml.MappingNode):
        raise SopsError(f"{where}: no sops metadata mapping")
    pairs = sops_value.value
    for i, (knode, vnode) in enumerate(pairs):
        if knode.value != "age":
            continue
        start = knode.start_mark.line
        end = pairs[i + 1][0].start_mark.line if i + 1 < len(pairs) else vnode.end_mark.line
        indent = knode.start_mark.column
        break
    else:
        raise SopsError(f"{where}: sops metadata has no age key to update")
    block = Branch([("age", _to_node([{"recipient": s.recipient, "enc": s.enc} for s in stanzas]))])
    writer = yamlio._Writer()
    writer.mapping(block, indent)
    lines = text.splitlines(keepends=True)
    new = [line + "\n" for line in writer.out]
    return "".join(lines[:start] + new + lines[end:])


def decrypt_file(path: Path) -> str:
    """``sops decrypt PATH`` in memory: the plaintext, opened with the identities sops
    itself would find ($SOPS_AGE_KEY_FILE, $SOPS_AGE_KEY, ...)."""
    return SopsFile.load(path).plaintext([i.identity for i in find_identities()])
