"""The sops format in Python, held to the real sops 3.11 binary."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyrage
import pytest
from secrets_fixtures import (
    CORPUS,
    SAMPLE_JSON,
    SAMPLE_YAML,
    AgeKey,
    age_keygen,
    random_document,
    sops,
)

from nixify.secrets import yamlio
from nixify.secrets.keys import identities_from_file
from nixify.secrets.sopsfile import (
    Format,
    SopsError,
    SopsFile,
    decrypt_value,
    encrypt_tree,
    encrypt_value,
)


def _ids(path: Path) -> list[pyrage.x25519.Identity]:
    return [i.identity for i in identities_from_file(path)]


@pytest.fixture
def op(tmp_path: Path) -> AgeKey:
    return age_keygen(tmp_path / "op.txt")


def _sops_encrypt(tmp_path: Path, name: str, text: str, recipients: list[str]) -> Path:
    plain = tmp_path / name
    plain.write_text(text)
    out = sops(["encrypt", "--age", ",".join(recipients), str(plain)], tmp_path).stdout
    enc = tmp_path / ("enc." + name)
    enc.write_bytes(out)
    plain.unlink()
    return enc


@pytest.mark.parametrize(("name", "text"), [("doc.yaml", SAMPLE_YAML), ("doc.json", SAMPLE_JSON)])
def test_decrypt_matches_sops_decrypt_byte_for_byte(
    tmp_path: Path, op: AgeKey, name: str, text: str
) -> None:
    enc = _sops_encrypt(tmp_path, name, text, [op.recipient])
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout.decode()
    assert "# database credentials" in expected or name.endswith(".json")
    assert SopsFile.load(enc).plaintext(_ids(op.identity_file)) == expected


def test_encrypted_yaml_reads_back_to_the_same_text(tmp_path: Path, op: AgeKey) -> None:
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient])
    text = enc.read_text()
    assert yamlio.dump(yamlio.load(text)) == text


@pytest.mark.parametrize(("name", "text"), [("doc.yaml", SAMPLE_YAML), ("doc.json", SAMPLE_JSON)])
def test_sops_decrypts_nixify_encryption_to_identical_plaintext(
    tmp_path: Path, op: AgeKey, name: str, text: str
) -> None:
    reference = _sops_encrypt(tmp_path, name, text, [op.recipient])
    expected = sops(["decrypt", str(reference)], tmp_path, op.identity_file).stdout
    ours = tmp_path / ("ours." + name)
    plain = SopsFile.load(reference).decrypt(_ids(op.identity_file))
    fmt: Format = "json" if name.endswith("json") else "yaml"
    ours.write_text(encrypt_tree(plain, fmt, [op.recipient]))
    got = sops(["decrypt", str(ours)], tmp_path, op.identity_file).stdout
    assert got == expected


def test_updatekeys_adds_and_removes_recipients_keeping_everything_else(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    a = age_keygen(tmp_path / "a.txt")
    b = age_keygen(tmp_path / "b.txt")
    c = age_keygen(tmp_path / "c.txt")
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient, a.recipient, b.recipient])
    before = enc.read_text()
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    sf = SopsFile.load(enc)
    key = sf.data_key(_ids(op.identity_file))
    new = sf.with_recipients([op.recipient, a.recipient, c.recipient], key)
    assert new is not None
    enc.write_text(new)
    # c decrypts with the real binary, b no longer does
    assert sops(["decrypt", str(enc)], tmp_path, c.identity_file).stdout == expected
    refused = sops(["decrypt", str(enc)], tmp_path, b.identity_file, check=False)
    assert refused.returncode != 0

    # everything outside sops.age is byte-identical: values, comments, MAC, lastmodified
    def outside_age(text: str) -> str:
        return re.sub(r"(?ms)^    age:\n.*?(?=^    lastmodified:)", "", text)

    assert outside_age(new) == outside_age(before)
    # and a file already keyed right is not rewritten
    again = SopsFile.load(enc)
    assert again.with_recipients([op.recipient, a.recipient, c.recipient], key) is None


def test_updatekeys_json(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    c = age_keygen(tmp_path / "c.txt")
    enc = _sops_encrypt(tmp_path, "doc.json", SAMPLE_JSON, [op.recipient])
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    sf = SopsFile.load(enc)
    new = sf.with_recipients([c.recipient], sf.data_key(_ids(op.identity_file)))
    assert new is not None
    enc.write_text(new)
    assert sops(["decrypt", str(enc)], tmp_path, c.identity_file).stdout == expected
    assert sops(["decrypt", str(enc)], tmp_path, op.identity_file, check=False).returncode != 0
    assert SopsFile.load(enc).metadata["mac"] == sf.metadata["mac"]


def test_rotate_gives_a_new_data_key(tmp_path: Path, op: AgeKey) -> None:
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient])
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    sf = SopsFile.load(enc)
    old_key = sf.data_key(_ids(op.identity_file))
    enc.write_text(sf.rotated(_ids(op.identity_file), [op.recipient]))
    rotated = SopsFile.load(enc)
    assert rotated.data_key(_ids(op.identity_file)) != old_key
    assert sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout == expected


def test_corrupt_ciphertext_is_refused_naming_file_and_key(tmp_path: Path, op: AgeKey) -> None:
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient])
    text = enc.read_text()
    m = re.search(r"password: ENC\[AES256_GCM,data:([^,]+),", text)
    assert m
    data = m.group(1)
    flipped = ("A" if data[0] != "A" else "B") + data[1:]
    enc.write_text(text.replace(data, flipped, 1))
    where = re.escape(str(enc))
    with pytest.raises(SopsError, match=rf"{where}: cannot decrypt value at db:password"):
        SopsFile.load(enc).plaintext(_ids(op.identity_file))


def test_mac_mismatch_is_refused(tmp_path: Path, op: AgeKey) -> None:
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient])
    sf = SopsFile.load(enc)
    key = sf.data_key(_ids(op.identity_file))
    text = enc.read_text()
    old = re.search(r"port: (ENC\[[^\]]+\])", text)
    assert old and decrypt_value(old.group(1), key, "db:port:") == 5432
    # a value validly encrypted under the data key, but not the one the MAC covers
    enc.write_text(text.replace(old.group(1), encrypt_value(5433, key, "db:port:")))
    with pytest.raises(SopsError, match=rf"{re.escape(str(enc))}: MAC mismatch"):
        SopsFile.load(enc).plaintext(_ids(op.identity_file))
    # the real binary agrees
    assert sops(["decrypt", str(enc)], tmp_path, op.identity_file, check=False).returncode != 0


def test_wrong_identity_and_not_a_sops_file(tmp_path: Path, op: AgeKey) -> None:
    other = age_keygen(tmp_path / "other.txt")
    enc = _sops_encrypt(tmp_path, "doc.yaml", SAMPLE_YAML, [op.recipient])
    with pytest.raises(SopsError, match="none of the 1 identities opens"):
        SopsFile.load(enc).plaintext(_ids(other.identity_file))
    plain = tmp_path / "plain.yaml"
    plain.write_text("a: 1\n")
    with pytest.raises(SopsError, match="not a sops file"):
        SopsFile.load(plain)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_both_directions(tmp_path: Path, op: AgeKey, name: str) -> None:
    text = CORPUS[name]
    enc = _sops_encrypt(tmp_path, f"{name}.yaml", text, [op.recipient])
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    # sops's file, read by nixify
    assert SopsFile.load(enc).plaintext(_ids(op.identity_file)).encode() == expected
    # nixify's file (from the plaintext, comments and all), read by sops
    ours = tmp_path / f"ours.{name}.yaml"
    ours.write_text(encrypt_tree(yamlio.load(text), "yaml", [op.recipient]))
    assert sops(["decrypt", str(ours)], tmp_path, op.identity_file).stdout == expected


PARTIAL_DOC = """\
# top comment
db:
  user: admin
  password: x
  port: 1
  key_secret: s
  x_unenc:
    # inner
    y: 1
# other
"""


@pytest.mark.parametrize(
    "flags",
    [
        ["--encrypted-regex", "^(password|port)$"],
        ["--unencrypted-regex", "^user$"],
        ["--encrypted-suffix", "_secret"],
        ["--unencrypted-suffix", "_unenc"],
    ],
)
def test_partial_encryption_rules_match_sops(tmp_path: Path, op: AgeKey, flags: list[str]) -> None:
    plain = tmp_path / "p.yaml"
    plain.write_text(PARTIAL_DOC)
    enc = tmp_path / "enc.yaml"
    enc.write_bytes(sops(["encrypt", "--age", op.recipient, *flags, str(plain)], tmp_path).stdout)
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    sf = SopsFile.load(enc)
    assert sf.plaintext(_ids(op.identity_file)).encode() == expected
    rotated = tmp_path / "rot.yaml"
    rotated.write_text(sf.rotated(_ids(op.identity_file), sf.recipients))
    assert sops(["decrypt", str(rotated)], tmp_path, op.identity_file).stdout == expected

    # the same leaves (values and comments) are left in the clear as sops leaves them
    def shape(text: str) -> list[str]:
        return [
            re.sub(r"ENC\[[^\]]*\]", "ENC", line)
            for line in text.splitlines()
            if "lastmodified" not in line and not re.fullmatch(r"\s*[A-Za-z0-9+/=]+", line)
        ]

    assert shape(rotated.read_text()) == shape(enc.read_text())


@pytest.mark.parametrize("seed", range(12))
def test_random_documents_both_directions(tmp_path: Path, op: AgeKey, seed: int) -> None:
    text = random_document(random.Random(seed))
    enc = _sops_encrypt(tmp_path, "doc.yaml", text, [op.recipient])
    expected = sops(["decrypt", str(enc)], tmp_path, op.identity_file).stdout
    assert SopsFile.load(enc).plaintext(_ids(op.identity_file)).encode() == expected
    ours = tmp_path / "ours.yaml"
    ours.write_text(encrypt_tree(yamlio.load(text), "yaml", [op.recipient]))
    assert sops(["decrypt", str(ours)], tmp_path, op.identity_file).stdout == expected
