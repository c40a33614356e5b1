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
from nixify.secrets.tree import Branch, Comment, Node, Scalar, Timestamp, map_leaves

Format = Literal["yaml", "json"]
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
SOPS_VERSION = "3.11.0"
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
UNSUPPORTED_SUFFIXES = {".env": "dotenv", ".ini": "INI", ".bin": "binary"}
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
        return text == "True"
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
        has_rule = any(
            meta.get(k)
            for k in (
                "unencrypted_suffix",
                "encrypted_suffix",
                "unencrypted_regex",
                "encrypted_regex",
            )
        )
        return cls(
            unencrypted_suffix=meta.get("unencrypted_suffix")
            or (None if has_rule else DEFAULT_UNENCRYPTED_SUFFIX),
            encrypted_suffix=meta.get("encrypted_suffix") or None,
            unencrypted_regex=meta.get("unencrypted_regex") or None,
            encrypted_regex=meta.get("encrypted_regex") or None,
            unencrypted_comment_regex=meta.get("unencrypted_comment_regex") or None,
            encrypted_comment_regex=meta.get("encrypted_comment_regex") or None,
            mac_only_encrypted=bool(meta.get("mac_only_encrypted", False)),
        )

    def metadata_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        ):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out

    def encrypts(self, value: Scalar | Comment, path: Sequence[str]) -> bool:
        """Whether sops encrypts this leaf: key-path rules for every leaf (a comment's
        path is its parent's), then the comment regexes for comments."""
        encrypted = True
        if self.unencrypted_suffix and any(k.endswith(self.unencrypted_suffix) for k in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(k.endswith(self.encrypted_suffix) for k in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, k) for k in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, k) for k in path)
        if isinstance(value, Comment):
            if self.unencrypted_comment_regex and re.search(
                self.unencrypted_comment_regex, value.text
            ):
                encrypted = False
            if self.encrypted_comment_regex:
                encrypted = re.search(self.encrypted_comment_regex, value.text) is not None
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
            text = p.read_text()
        except OSError as exc:
            raise SopsError(f"{p}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SopsError(f"{p}: not UTF-8 text") from exc
        return cls.parse(text, format_of(p), str(p))

    @classmethod
    def parse(cls, text: str, fmt: Format, where: str) -> SopsFile:
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
        metadata = _plain(sops_node)
        assert isinstance(metadata, dict)
        if metadata.get("key_groups"):
            raise SopsError(f"{where}: sops.key_groups (Shamir groups) are not supported")
        age: list[AgeStanza] = []
        for i, entry in enumerate(metadata.get("age") or []):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("recipient"), str)
                or not isinstance(entry.get("enc"), str)
            ):
                raise SopsError(f"{where}: sops.age[{i}] lacks recipient/enc")
            age.append(AgeStanza(entry["recipient"], entry["enc"]))
        for name in ("mac", "lastmodified"):
            if not isinstance(metadata.get(name), str):
                raise SopsError(f"{where}: sops.{name} missing")
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
        for stanza in self.age:
            try:
                sealed = dearmor(stanza.enc)
            except (ValueError, binascii.Error) as exc:
                raise SopsError(
                    f"{self.where}: sops.age enc for {stanza.recipient} is not armored age: {exc}"
                ) from exc
            try:
                key = bytes(pyrage.decrypt(sealed, ids))
            except pyrage.DecryptError:
                continue
            if len(key) != 32:
                raise SopsError(f"{self.where}: data key for {stanza.recipient} is not 32 bytes")
            return key
        raise SopsError(
            f"{self.where}: none of the {len(ids)} identities opens any of the "
            f"{len(self.age)} age recipients of this file"
        )

    def decrypt_tree(self, key: bytes) -> Branch:
        """The plaintext tree; SopsError naming the key path or the MAC on failure."""
        rules = self.rules
        digest = hashlib.sha512()

        def leaf(value: Scalar | Comment, path: list[str]) -> Scalar | Comment:
            if isinstance(value, Comment):
                if is_encrypted_value(value.text):
                    return self._open(value.text, key, path)
                return value
            plain = self._open(value, key, path) if is_encrypted_value(value) else value
            if not rules.mac_only_encrypted or is_encrypted_value(value):
                digest.update(mac_input(plain))
            return plain

        tree = map_leaves(self.tree, leaf)
        assert isinstance(tree, Branch)
        self._check_mac(key, digest.hexdigest().upper())
        return tree

    def _open(self, enc: Any, key: bytes, path: list[str]) -> Scalar | Comment:
        try:
            return decrypt_value(enc, key, _aad(path))
        except (ValueError, UnicodeDecodeError) as exc:
            where = ":".join(path) or "(top level)"
            raise SopsError(f"{self.where}: cannot decrypt value at {where}: {exc}") from exc

    def _check_mac(self, key: bytes, computed: str) -> None:
        try:
            stored = decrypt_value(self.metadata["mac"], key, self.metadata["lastmodified"])
        except ValueError as exc:
            raise SopsError(f"{self.where}: cannot decrypt sops.mac: {exc}") from exc
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

    def leaf(value: Scalar | Comment, path: list[str]) -> Scalar | Comment:
        encrypted = rules.encrypts(value, path)
        if not isinstance(value, Comment) and (not rules.mac_only_encrypted or encrypted):
            digest.update(mac_input(value))
        if not encrypted or value is None or value == "":
            return value
        if isinstance(value, Comment):
            return Comment(encrypt_value(value, key, _aad(path))) if value.text else value
        return encrypt_value(value, key, _aad(path))

    tree = _sequence_comments_as_items(map_leaves(plain, leaf))
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
