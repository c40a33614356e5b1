"""Hostile sops files: what a writer without any age key can do to one, held to the real sops.

Every case starts from a file the real sops 3.11 wrote (keys made at run time),
tampers with its text, then runs both ``sops decrypt`` and nixify's reader:

* nixify never accepts a file sops refuses;
* where sops accepts, the case says what nixify does: ``SAME`` (accepts, with
  the plaintext sops prints, byte for byte) or a refusal pattern (nixify is
  stricter, and the reason is given beside the case);
* every refusal is a ``SopsError`` that names the file and, where there is one,
  the key path.

What sops does is asserted too (``sops_accepts``), so that a new sops version
that changes its mind shows up here instead of silently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest
from secrets_fixtures import AgeKey, age_keygen, sops

from nixify.secrets.keys import identities_from_file
from nixify.secrets.sopsfile import MAX_BYTES, SopsError, SopsFile

DOC = """\
# credentials
api: s3cr3t
db:
    user: admin
    password: hunter2
    port: 5432
hosts:
    - alpha
    - beta
empty: ""
public_unencrypted: visible
"""

JSON_DOC = '{"api": "s3cr3t", "db": {"user": "admin", "port": 5432}, "hosts": ["a", "b"]}\n'

SAME = "same"  # nixify accepts, with exactly sops's plaintext


@dataclass(frozen=True)
class Base:
    """The untampered files of one run, all written by the real sops."""

    dir: Path
    op: AgeKey
    files: dict[str, str]  # kind -> text


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    d = tmp_path_factory.mktemp("hostile")
    op = age_keygen(d / "op.txt")
    other = age_keygen(d / "other.txt")
    files: dict[str, str] = {}

    def enc(kind: str, name: str, text: str, args: list[str], cwd: Path = d) -> None:
        (cwd / name).write_text(text)
        files[kind] = sops(["encrypt", *args, name], d, cwd=cwd).stdout.decode()
        (cwd / name).unlink()

    enc("yaml", "doc.yaml", DOC, ["--age", op.recipient])
    enc("json", "doc.json", JSON_DOC, ["--age", op.recipient])
    enc("two", "doc.yaml", DOC, ["--age", f"{op.recipient},{other.recipient}"])
    # mac_only_encrypted is a creation-rule setting, not a flag
    rules = d / "maconly"
    rules.mkdir()
    (rules / ".sops.yaml").write_text(
        f"creation_rules:\n  - age: {op.recipient}\n    mac_only_encrypted: true\n"
    )
    enc("maconly", "doc.yaml", DOC, [], cwd=rules)
    enc("maconly_all", "all.yaml", "api: s3cr3t\nn: 1\n", [], cwd=rules)
    assert "mac_only_encrypted: true" in files["maconly"]
    return Base(d, op, files)


def _ids(base: Base) -> list[pyrage.x25519.Identity]:
    return [i.identity for i in identities_from_file(base.op.identity_file)]


# ------------------------------------------------------------------ tampering


def _enc(text: str, key: str) -> str:
    """The ENC[...] of the first ``key:`` line (any indentation)."""
    m = re.search(rf"(?m)^\s*-?\s*{re.escape(key)}: (ENC\[[^\]]+\])", text)
    assert m, key
    return m.group(1)


def _items(text: str) -> list[str]:
    return re.findall(r"(?m)^    - (ENC\[[^\]]+\])$", text)


def _before_sops(extra: str) -> Callable[[str], str]:
    return lambda t: t.replace("\nsops:\n", f"\n{extra}sops:\n", 1)


def _in_sops(extra: str) -> Callable[[str], str]:
    return lambda t: t.replace("\n    version:", f"\n{extra}    version:", 1)


def _both(*fs: Callable[[str], str]) -> Callable[[str], str]:
    def run(t: str) -> str:
        for f in fs:
            t = f(t)
        return t

    return run


def _swap(a: str, b: str) -> Callable[[str], str]:
    def run(t: str) -> str:
        ea, eb = _enc(t, a), _enc(t, b)
        return t.replace(ea, "\0").replace(eb, ea).replace("\0", eb)

    return run


def _swap_items(t: str) -> str:
    first, second = _items(t)
    return t.replace(first, "\0").replace(second, first).replace("\0", second)


def _retype(key: str, old: str, new: str) -> Callable[[str], str]:
    def run(t: str) -> str:
        e = _enc(t, key)
        return t.replace(e, e.replace(f"type:{old}]", f"type:{new}]"))

    return run


def _bad_tag(t: str) -> str:
    e = _enc(t, "password")
    tag = re.search(r"tag:([^,]+)", e)
    assert tag
    flipped = ("A" if tag.group(1)[0] != "A" else "B") + tag.group(1)[1:]
    return t.replace(e, e.replace(tag.group(1), flipped))


def _mac(t: str) -> str:
    return _enc(t, "mac")


def _truncate_mac(t: str) -> str:
    m = _mac(t)
    data = re.search(r"data:([^,]+)", m)
    assert data
    return t.replace(m, m.replace(data.group(1), data.group(1)[:40]))


def _garbage_armor(index: int) -> Callable[[str], str]:
    """Stanza ``index``'s armored age file replaced by valid base64 that is not age."""

    def run(t: str) -> str:
        blocks = re.findall(r"-----BEGIN AGE ENCRYPTED FILE-----\n(.*?)\n\s*-----END", t, re.S)
        body = blocks[index]
        lines = body.split("\n")
        pad = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        garbage = pad + "Z2FyYmFnZSwgbm90IGFnZQ=="
        return t.replace(body, garbage, 1)

    return run


def _age_block(t: str) -> str:
    m = re.search(r"(?ms)^    age:\n.*?(?=^    lastmodified:)", t)
    assert m
    return m.group(0)


PGP = (
    "    pgp:\n"
    '        - created_at: "2024-01-01T00:00:00Z"\n'
    "          enc: |\n"
    "            -----BEGIN PGP MESSAGE-----\n\n"
    "            aGVsbG8=\n"
    "            -----END PGP MESSAGE-----\n"
    "          fp: 1234567890ABCDEF1234567890ABCDEF12345678\n"
)
KMS = (
    "    kms:\n"
    "        - arn: arn:aws:kms:us-east-1:111122223333:key/abc\n"
    '          created_at: "2024-01-01T00:00:00Z"\n'
    "          enc: aGVsbG8=\n"
    '          aws_profile: ""\n'
)


def _reorder_metadata(t: str) -> str:
    age = _age_block(t)
    m = re.search(r"(?m)^    lastmodified: .*\n    mac: .*\n", t)
    assert m
    return t.replace(age, "\0").replace(m.group(0), "").replace("\0", m.group(0) + age)


def _set_lastmodified(value: str) -> Callable[[str], str]:
    return lambda t: re.sub(r"(?m)^    lastmodified: .*$", f"    lastmodified: {value}", t)


ALIAS_BOMB = (
    'b0: &b0 [""]\n'
    "b1: &b1 [*b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0]\n"
    "b2: &b2 [*b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1]\n"
    "b3: &b3 [*b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2]\n"
    "b4: &b4 [*b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3]\n"
    "b5: &b5 [*b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4]\n"
    "b6: &b6 [*b5, *b5, *b5, *b5, *b5, *b5, *b5, *b5, *b5]\n"
    "b7: &b7 [*b6, *b6, *b6, *b6, *b6, *b6, *b6, *b6, *b6]\n"
    "b8: &b8 [*b7, *b7, *b7, *b7, *b7, *b7, *b7, *b7, *b7]\n"
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # which base file
    tamper: Callable[[str], str]
    sops_accepts: bool
    nixify: str  # SAME, or a regex the refusal must match (after the file name)
    why: str = ""  # when sops accepts and nixify refuses: why nixify is stricter


CASES = [
    # --- injected plaintext (the file's rules say every leaf here is encrypted)
    Case("plaintext_top", "yaml", _before_sops("injected: evil\n"), False,
         r"injected: .*not encrypted"),
    Case("plaintext_with_mac_only_flag", "yaml",
         _both(lambda t: "injected: evil\n" + t, _in_sops("    mac_only_encrypted: true\n")),
         False, r"injected: .*not encrypted"),
    Case("plaintext_map_with_mac_only_flag", "yaml",
         _both(lambda t: "db2:\n    key_file: /tmp/x\n" + t,
               _in_sops("    mac_only_encrypted: true\n")),
         False, r"db2:key_file: .*not encrypted"),
    Case("plaintext_nested", "yaml", lambda t: t.replace("db:\n", "db:\n    socket: /tmp/x\n"),
         False, r"db:socket: .*not encrypted"),
    Case("plaintext_list_item", "yaml", lambda t: t.replace("hosts:\n", "hosts:\n    - evil\n"),
         False, r"hosts\[0\]: .*not encrypted"),
    Case("plaintext_int", "yaml", _before_sops("injected: 5\n"), False,
         r"injected: .*not encrypted"),
    Case("plaintext_unencrypted_suffix", "yaml", _before_sops("evil_unencrypted: x\n"), False,
         r"MAC mismatch"),
    Case("plaintext_unencrypted_suffix_mac_only_flag", "yaml",
         _both(_before_sops("evil_unencrypted: x\n"), _in_sops("    mac_only_encrypted: true\n")),
         False, r"MAC mismatch"),
    Case("mac_only_flag_removed", "maconly",
         lambda t: t.replace("    mac_only_encrypted: true\n", ""), False, r"MAC mismatch"),
    Case("rule_swapped_to_regex", "yaml",
         _both(_before_sops("injected: evil\n"),
               lambda t: t.replace("unencrypted_suffix: _unencrypted",
                                   "unencrypted_regex: ^(injected|public_unencrypted)$")),
         False, r"MAC mismatch"),
    Case("second_rule_added", "yaml", _in_sops("    unencrypted_regex: ^api$\n"), False,
         r"sops: more than one of"),
    Case("plaintext_in_mac_only_file", "maconly", _before_sops("evil_unencrypted: x\n"), True,
         r"evil_unencrypted: plaintext not covered by the MAC",
         "mac_only_encrypted leaves plaintext values unauthenticated: anyone could have added it"),
    Case("mac_only_file_with_plaintext_leaf", "maconly", lambda t: t, True,
         r"public_unencrypted: plaintext not covered by the MAC",
         "same reason: the plaintext leaf of a mac_only_encrypted file is not authenticated"),
    Case("mac_only_file_all_encrypted", "maconly_all", lambda t: t, True, SAME),
    Case("empty_value_injected", "yaml", _before_sops('injected: ""\n'), True, SAME),
    Case("empty_map_injected", "yaml", _before_sops("injected: {}\n"), True, SAME),
    Case("plaintext_comment", "yaml", lambda t: "# evil\n" + t, True,
         r"comment .*not encrypted",
         "the file's rules encrypt every comment; sops keeps a plaintext one (old files)"),
    # --- duplicate keys
    Case("duplicate_top", "yaml", lambda t: t.replace("\ndb:\n", "\napi: evil\ndb:\n", 1), False,
         r"api: key given twice"),
    Case("duplicate_top_encrypted", "yaml",
         lambda t: t.replace("\ndb:\n", f"\napi: {_enc(t, 'api')}\ndb:\n", 1), False,
         r"api: key given twice"),
    Case("duplicate_nested", "yaml",
         lambda t: t.replace("\nhosts:\n", "\n    user: evil\nhosts:\n", 1), False,
         r"db:user: key given twice"),
    Case("duplicate_metadata", "yaml",
         lambda t: t.replace("\n    version:", "\n    mac: x\n    version:", 1), False,
         r"sops:mac: key given twice"),
    # --- anchors, aliases, merge keys (sops writes none)
    # sops does not refuse it: it runs until killed (here, after 5 s)
    Case("alias_bomb", "yaml", lambda t: ALIAS_BOMB + t, False, r"b0: YAML anchor"),
    Case("anchor_and_alias", "yaml",
         lambda t: t.replace("\napi: ", "\napi: &a ", 1).replace("\ndb:\n", "\ncopy: *a\ndb:\n"),
         False, r"api: YAML anchor"),
    Case("anchor_only", "yaml", lambda t: t.replace("\napi: ", "\napi: &a ", 1), True,
         r"api: YAML anchor", "sops writes no anchors: one in a sops file was put there by hand"),
    Case("merge_key_alias", "yaml",
         lambda t: t.replace("\ndb:\n", "\ndb: &d\n")
         .replace("\nhosts:", "\nd2:\n    <<: *d\nhosts:"),
         False, r"db: YAML anchor"),
    Case("merge_key_inline", "yaml", _before_sops('m:\n    <<: {x: ""}\n'), True,
         r"m:<<: YAML merge key", "a merge key hides keys from a reader that does not merge"),
    # --- metadata
    Case("metadata_reordered", "yaml", _reorder_metadata, True, SAME),
    Case("age_enc_garbage", "yaml", _garbage_armor(0), False, r"sops:age\[0\]:enc"),
    Case("age_enc_not_armored", "yaml",
         lambda t: t.replace(_age_block(t), "    age:\n        - recipient: "
                             + re.findall(r"recipient: (\S+)", t)[0] + "\n          enc: hello\n"),
         False, r"sops:age\[0\]:enc: not an armored age file"),
    Case("age_enc_garbage_other_stanza", "two", _garbage_armor(1), True, r"sops:age\[1\]:enc",
         "every stanza must be an age file: a rekey passes the data key on through them"),
    Case("pgp_instead_of_age", "yaml", lambda t: t.replace(_age_block(t), PGP), False,
         r"sops:pgp: .*not supported"),
    Case("kms_instead_of_age", "yaml", lambda t: t.replace(_age_block(t), KMS), False,
         r"sops:kms: .*not supported"),
    Case("pgp_beside_age", "yaml", lambda t: t.replace(_age_block(t), _age_block(t) + PGP), True,
         r"sops:pgp: .*not supported",
         "a key source nixify does not manage is a reader the audit cannot see"),
    Case("mac_truncated", "yaml", _truncate_mac, False, r"sops:mac"),
    Case("mac_removed", "yaml", lambda t: t.replace(f"    mac: {_mac(t)}\n", ""), False,
         r"sops:mac: missing"),
    Case("lastmodified_changed", "yaml", _set_lastmodified('"2001-01-01T00:00:00Z"'), False,
         r"sops:mac"),
    Case("lastmodified_not_a_time", "yaml", _set_lastmodified("yesterday"), False,
         r"sops:lastmodified: not an RFC 3339 time"),
    Case("metadata_extra_key", "yaml", _in_sops("    surprise: x\n"), True,
         r"sops:surprise: unknown metadata field",
         "a field sops 3.11 does not write may change how a later sops reads the file"),
    Case("mac_only_not_a_bool", "yaml", _in_sops('    mac_only_encrypted: "yes"\n'), False,
         r"sops:mac_only_encrypted: expected true or false"),
    # --- values
    Case("type_str_to_int", "yaml", _retype("api", "str", "int"), False, r"api: "),
    Case("type_int_to_str", "yaml", _retype("port", "int", "str"), True, SAME),
    Case("type_unknown", "yaml", _retype("api", "str", "blob"), False, r"api: "),
    Case("swapped_between_keys", "yaml", _swap("api", "password"), False, r"api: .*authentic"),
    Case("swapped_list_items", "yaml", _swap_items, False, r"MAC mismatch"),
    Case("bad_tag", "yaml", _bad_tag, False, r"db:password: .*authentic"),
    Case("iv_empty", "yaml",
         lambda t: re.sub(r"(password: ENC\[AES256_GCM,data:[^,]+,iv:)[^,]+", r"\1", t), False,
         r"db:password: "),
    # --- size and depth
    Case("deep_nesting", "yaml", _before_sops("deep: " + "[" * 5000 + "]" * 5000 + "\n"), True,
         r"nested deeper than", "a bound on depth keeps every reader's stack bounded"),
    Case("deep_nesting_100", "yaml", _before_sops("deep:\n" + "".join(
             "    " * i + f"k{i}:\n" for i in range(1, 100)) + "    " * 100 + "x: ''\n"), True,
         r"deep:k1:k2:k3:k4:k5\.\.\.: nested deeper than 64",
         "a bound on depth keeps every reader's stack bounded"),
    Case("shallow_nesting", "yaml", _before_sops("deep: " + "[" * 8 + "]" * 8 + "\n"), True, SAME),
    Case("huge_file", "yaml",
         lambda t: t.replace("\nsops:\n", "\npad_unencrypted: " + "x" * MAX_BYTES + "\nsops:\n"),
         False, r"larger than"),
    # --- JSON
    Case("json_plaintext", "json", lambda t: t.replace('{\n', '{\n\t"injected": "evil",\n', 1),
         False, r"injected: .*not encrypted"),
    Case("json_duplicate", "json",
         lambda t: t.replace('{\n', '{\n\t"api": ' + _json_enc(t, "api") + ',\n', 1), False,
         r"api: key given twice"),
    Case("json_deep", "json",
         lambda t: t.replace('{\n', '{\n\t"deep": ' + "[" * 5000 + "]" * 5000 + ",\n", 1), True,
         r"nested deeper than", "a bound on depth keeps every reader's stack bounded"),
    Case("json_nan", "json", lambda t: t.replace('{\n', '{\n\t"n_unencrypted": NaN,\n', 1), False,
         r"invalid JSON"),
]  # fmt: skip


def _json_enc(text: str, key: str) -> str:
    m = re.search(rf'"{key}": ("ENC\[[^\]]+\]")', text)
    assert m
    return m.group(1)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file(base: Base, case: Case, tmp_path: Path) -> None:
    suffix = ".json" if case.kind == "json" else ".yaml"
    path = tmp_path / f"{case.name}{suffix}"
    path.write_text(case.tamper(base.files[case.kind]))
    # bounded: the real sops does not end on the alias bomb (it grows by GBs a minute)
    real = sops(["decrypt", str(path)], base.dir, base.op.identity_file, check=False, timeout=5)
    assert (real.returncode == 0) == case.sops_accepts, real.stderr.decode()[-500:]
    try:
        ours: str | None = SopsFile.load(path).plaintext(_ids(base))
        refusal = ""
    except SopsError as exc:
        ours, refusal = None, str(exc)
    if case.nixify == SAME:
        assert refusal == "", refusal
        assert ours is not None and ours.encode() == real.stdout
        return
    assert case.sops_accepts is False or case.why, "say why nixify is stricter than sops"
    assert ours is None, f"nixify accepted what it must refuse:\n{ours}"
    assert refusal.startswith(f"{path}: "), refusal
    assert re.search(case.nixify, refusal[len(str(path)) + 2 :]), refusal


def test_strict_parse_needs_no_key(base: Base, tmp_path: Path) -> None:
    """Structure is checked on load, before any key is used: `check` and the deploy's
    pre-upload read refuse a malformed file even where no identity can open it."""
    for case in CASES:
        if case.name in ("duplicate_top", "alias_bomb", "age_enc_garbage", "metadata_extra_key"):
            path = tmp_path / f"{case.name}.yaml"
            path.write_text(case.tamper(base.files[case.kind]))
            with pytest.raises(SopsError, match=re.escape(str(path))):
                SopsFile.load(path)


def test_alias_bomb_is_refused_quickly(base: Base, tmp_path: Path) -> None:
    """The 450-byte alias bomb ends in a refusal within seconds, in a fresh process."""
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB + base.files["yaml"])
    assert len(ALIAS_BOMB) < 500
    code = (
        "import sys\n"
        "from nixify.secrets.sopsfile import SopsError, SopsFile\n"
        "try:\n"
        "    SopsFile.load(sys.argv[1])\n"
        "except SopsError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 3, proc.stderr
    assert str(path) in proc.stdout and "anchor" in proc.stdout
