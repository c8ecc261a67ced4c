"""`alkdev_storage.secrets`: PBKDF2-HMAC-SHA256 + AES-256-GCM in WebCrypto's
layout. Known answers computed with an independent implementation (the
`cryptography` package over OpenSSL, its PBKDF2 checked against hashlib's),
blobs checked both ways against that implementation, and every refusal:
wrong password, a changed byte anywhere, malformed stored forms, oversized
inputs."""

from __future__ import annotations

import base64
import threading
import time

import pytest

import alkdev_storage as alk
from alkdev_storage import secrets
from alkdev_storage.secrets import EncryptedData

PASSWORD = "correct horse battery staple"
PLAINTEXT = "a token: é ✓".encode()
SALT = "AAECAwQFBgcICQoLDA0ODw=="  # bytes 0..15
IV = "ZGVmZ2hpamtsbW5v"  # bytes 100..111
# Computed with cryptography 50.0.2 (AESGCM, PBKDF2HMAC) from the values above.
KNOWN = {
    1: "i53l59+KpfXZa2S6fQ9ZHZAaPzvUDCa2XQSLOsd57w==",
    2: "+fPztkoTp9vsuxiBRvFbDSBRPSzytS/czLzVkMfOlw==",
}


@pytest.mark.parametrize("version", [1, 2])
def test_known_answers_decrypt(version: int) -> None:
    stored = {"keyVersion": version, "salt": SALT, "iv": IV, "data": KNOWN[version]}
    assert secrets.decrypt(stored, PASSWORD) == PLAINTEXT
    assert secrets.decrypt(stored, PASSWORD.encode()) == PLAINTEXT
    # The iteration count is the version's: the other version's count does not decrypt.
    other = {**stored, "keyVersion": 3 - version}
    with pytest.raises(alk.DecryptionError):
        secrets.decrypt(other, PASSWORD)


@pytest.mark.parametrize("version", [1, 2])
def test_round_trip_and_fresh_salt_and_iv(version: int) -> None:
    a = secrets.encrypt(PLAINTEXT, PASSWORD, key_version=version)
    b = secrets.encrypt(PLAINTEXT, PASSWORD, key_version=version)
    assert a.key_version == version
    assert (len(a.salt), len(a.iv), len(a.data)) == (16, 12, len(PLAINTEXT) + 16)
    assert a.salt != b.salt and a.iv != b.iv and a.data != b.data
    assert secrets.decrypt(a, PASSWORD) == PLAINTEXT
    assert secrets.decrypt(EncryptedData.from_dict(a.to_dict()), PASSWORD) == PLAINTEXT
    assert secrets.encrypt("text", PASSWORD).key_version == secrets.CURRENT_KEY_VERSION == 2
    assert secrets.decrypt(secrets.encrypt("", PASSWORD), PASSWORD) == b""


def test_blobs_agree_with_an_independent_implementation() -> None:
    crypto = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    def key(salt: bytes, iterations: int) -> bytes:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
        return kdf.derive(PASSWORD.encode())

    ours = secrets.encrypt(PLAINTEXT, PASSWORD, key_version=1)
    theirs_key = key(ours.salt, 100_000)
    assert crypto.AESGCM(theirs_key).decrypt(ours.iv, ours.data, None) == PLAINTEXT
    salt, iv = bytes(range(16, 32)), bytes(range(12))
    theirs = crypto.AESGCM(key(salt, 200_000)).encrypt(iv, b"from webcrypto's layout", None)
    stored = {
        "keyVersion": 2,
        "salt": base64.b64encode(salt).decode(),
        "iv": base64.b64encode(iv).decode(),
        "data": base64.b64encode(theirs).decode(),
    }
    assert secrets.decrypt(stored, PASSWORD) == b"from webcrypto's layout"


def test_a_wrong_password_or_any_changed_byte_is_a_decryption_error() -> None:
    sealed = secrets.encrypt(PLAINTEXT, PASSWORD, key_version=1)
    with pytest.raises(alk.DecryptionError, match="does not decrypt"):
        secrets.decrypt(sealed, PASSWORD + "!")
    for field in ("salt", "iv", "data"):
        raw = bytearray(getattr(sealed, field))
        for index in (0, len(raw) - 1):
            changed = bytearray(raw)
            changed[index] ^= 0x01
            blob = EncryptedData(
                sealed.key_version,
                **{f: getattr(sealed, f) for f in ("salt", "iv", "data") if f != field},
                **{field: bytes(changed)},
            )
            with pytest.raises(alk.DecryptionError):
                secrets.decrypt(blob, PASSWORD)
    cut = EncryptedData(sealed.key_version, sealed.salt, sealed.iv, sealed.data[:-1])
    with pytest.raises(alk.DecryptionError):
        secrets.decrypt(cut, PASSWORD)


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"keyVersion": 2, "salt": SALT, "iv": IV}, "missing data"),
        ({"keyVersion": 2, "salt": SALT, "iv": IV, "data": KNOWN[2], "x": 1}, "unknown"),
        ({"keyVersion": 3, "salt": SALT, "iv": IV, "data": KNOWN[2]}, "key version 3"),
        ({"keyVersion": True, "salt": SALT, "iv": IV, "data": KNOWN[2]}, "keyVersion"),
        ({"keyVersion": "2", "salt": SALT, "iv": IV, "data": KNOWN[2]}, "keyVersion"),
        ({"keyVersion": 2, "salt": "not base64!", "iv": IV, "data": KNOWN[2]}, "base64"),
        ({"keyVersion": 2, "salt": IV, "iv": IV, "data": KNOWN[2]}, "16-byte salt"),
        ({"keyVersion": 2, "salt": SALT, "iv": SALT, "data": KNOWN[2]}, "iv is longer"),
        ({"keyVersion": 2, "salt": SALT, "iv": "AAAA", "data": KNOWN[2]}, "12-byte IV"),
        ({"keyVersion": 2, "salt": SALT, "iv": IV, "data": "AAAA"}, "tag"),
        ({"keyVersion": 2, "salt": SALT, "iv": IV, "data": 7}, "base64 string"),
        ({"keyVersion": 2, "salt": SALT, "iv": IV, "data": "A" * 2_000_000}, "longer"),
    ],
)
def test_malformed_stored_forms_are_refused(stored: dict[str, object], message: str) -> None:
    with pytest.raises(alk.InvalidInputError, match=message):
        secrets.decrypt(stored, PASSWORD)


def test_inputs_are_bounded_and_typed() -> None:
    with pytest.raises(alk.InvalidInputError, match="1 to 1024 bytes"):
        secrets.encrypt(b"x", "")
    with pytest.raises(alk.InvalidInputError, match="1 to 1024 bytes"):
        secrets.encrypt(b"x", "p" * 1025)
    with pytest.raises(alk.InvalidInputError, match="at most 1048576 bytes"):
        secrets.encrypt(b"x" * (secrets.MAX_PLAINTEXT_BYTES + 1), PASSWORD)
    with pytest.raises(alk.InputTypeError):
        secrets.encrypt(12, PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(alk.InputTypeError):
        secrets.encrypt(b"x", None)  # type: ignore[arg-type]
    with pytest.raises(alk.InvalidInputError, match="not valid Unicode"):
        secrets.encrypt("\ud800", PASSWORD)
    with pytest.raises(alk.InvalidInputError, match="key version 0"):
        secrets.encrypt(b"x", PASSWORD, key_version=0)
    with pytest.raises(alk.InputTypeError):
        secrets.decrypt([1, 2], PASSWORD)  # type: ignore[arg-type]


def test_derivation_releases_the_gil() -> None:
    ticks = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.monotonic()
    for _ in range(3):
        secrets.encrypt(b"x", PASSWORD)  # 200,000 PBKDF2 rounds each
    took = time.monotonic() - started
    stop.set()
    ticker.join()
    # The other thread kept running through the derivations.
    assert ticks >= took * 1000 / 4
