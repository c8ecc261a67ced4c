"""Encrypted secrets (SPEC §7): password-based AES-256-GCM in the layout of
the reference TypeScript system (WebCrypto), so a blob written by either
decrypts in the other.

>>> from alkdev_storage import secrets
>>> sealed = secrets.encrypt(b"s3cret token", "correct horse")
>>> sorted(sealed.to_dict())
['data', 'iv', 'keyVersion', 'salt']
>>> secrets.decrypt(sealed.to_dict(), "correct horse")
b's3cret token'
>>> secrets.decrypt(sealed, "wrong horse")
Traceback (most recent call last):
...
alkdev_storage.errors.DecryptionError: the secret does not decrypt: a wrong password, ...

The scheme, per encryption:

- a 16-byte random salt and a 12-byte random IV (the system's random
  source);
- the key: PBKDF2-HMAC-SHA256 of the password's UTF-8 bytes and the salt, 32
  bytes, 100,000 iterations for key version 1 and 200,000 for version 2 (the
  default);
- AES-256-GCM of the plaintext under that key and IV, no associated data;
  ``data`` is the ciphertext with the 16-byte tag appended (WebCrypto's
  output as it is);
- stored as ``{"keyVersion": 2, "salt": ..., "iv": ..., "data": ...}``, the
  three byte strings in standard base64.

The cipher and the derivation are RustCrypto's ``aes-gcm`` and ``pbkdf2``
crates (rust/secrets.rs), run with the GIL released. A wrong password and a
changed blob are the same failure to AES-GCM (the tag does not verify):
`DecryptionError`, never garbage. Every input is bounded: plaintexts up to
`MAX_PLAINTEXT_BYTES`, passwords up to `MAX_PASSWORD_BYTES`, and the cost of
a decryption is fixed by the key version (the blob cannot ask for more
iterations).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from alkdev_storage import _native
from alkdev_storage._checks import shown
from alkdev_storage.errors import DecryptionError, InputTypeError, InvalidInputError

__all__ = [
    "CURRENT_KEY_VERSION",
    "ITERATIONS",
    "MAX_PASSWORD_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "EncryptedData",
    "decrypt",
    "encrypt",
]

ITERATIONS: Final = {1: 100_000, 2: 200_000}
"""PBKDF2 iterations per key version."""
CURRENT_KEY_VERSION: Final = 2
SALT_BYTES: Final = 16
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
MAX_PLAINTEXT_BYTES: Final = 1 << 20
"""The largest plaintext encrypted (1 MiB): secrets are keys and tokens."""
MAX_PASSWORD_BYTES: Final = 1024
_FIELDS: Final = frozenset({"keyVersion", "salt", "iv", "data"})


@dataclass(frozen=True, slots=True)
class EncryptedData:
    """An encrypted secret: its key version and the salt, IV and data
    (ciphertext and tag) as bytes. ``to_dict`` / ``from_dict`` give the
    stored form, the byte strings in base64."""

    key_version: int
    salt: bytes
    iv: bytes
    data: bytes

    def __post_init__(self) -> None:
        _check_version(self.key_version)
        for name, value in (("salt", self.salt), ("iv", self.iv), ("data", self.data)):
            if not isinstance(value, bytes):
                raise InputTypeError(f"{name} is bytes, not {type(value).__name__}")
        if len(self.salt) != SALT_BYTES or len(self.iv) != IV_BYTES:
            raise InvalidInputError(
                f"an encrypted secret has a {SALT_BYTES}-byte salt and a {IV_BYTES}-byte IV, "
                f"not {len(self.salt)} and {len(self.iv)} bytes"
            )
        if not TAG_BYTES <= len(self.data) <= MAX_PLAINTEXT_BYTES + TAG_BYTES:
            raise InvalidInputError(
                f"an encrypted secret's data is its ciphertext and {TAG_BYTES}-byte tag, "
                f"{TAG_BYTES} to {MAX_PLAINTEXT_BYTES + TAG_BYTES} bytes, not {len(self.data)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """``{"keyVersion", "salt", "iv", "data"}``, base64 strings."""
        return {
            "keyVersion": self.key_version,
            "salt": _b64(self.salt),
            "iv": _b64(self.iv),
            "data": _b64(self.data),
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> EncryptedData:
        """Read the stored form; `InvalidInputError` for anything else
        (missing or extra fields, bad base64, wrong sizes)."""
        if not isinstance(stored, Mapping):
            raise InputTypeError(f"an encrypted secret is a mapping, not {type(stored).__name__}")
        fields = set(stored)
        if fields != _FIELDS:
            missing, extra = sorted(_FIELDS - fields), sorted(map(str, fields - _FIELDS))
            raise InvalidInputError(
                "an encrypted secret has exactly the fields keyVersion, salt, iv and data"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {shown(extra)}" if extra else "")
            )
        version = stored["keyVersion"]
        if type(version) is not int:
            raise InvalidInputError(f"keyVersion is an integer, not {shown(version)}")
        return cls(
            version,
            _unb64("salt", stored["salt"], SALT_BYTES),
            _unb64("iv", stored["iv"], IV_BYTES),
            _unb64("data", stored["data"], MAX_PLAINTEXT_BYTES + TAG_BYTES),
        )


def _check_version(version: object) -> int:
    if type(version) is not int or version not in ITERATIONS:
        raise InvalidInputError(
            f"key version {shown(version)} is not one of {', '.join(map(str, ITERATIONS))}"
        )
    return version


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(name: str, text: object, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise InvalidInputError(f"{name} is a base64 string, not {type(text).__name__}")
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise InvalidInputError(
            f"{name} is longer than an encrypted secret's can be ({max_bytes} bytes at most)"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInputError(f"{name} is not valid base64: {e}") from None


def _password(password: str | bytes) -> bytes:
    if isinstance(password, str):
        try:
            raw = password.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("the password is not valid Unicode text") from None
    elif isinstance(password, bytes):
        raw = password
    else:
        raise InputTypeError(f"a password is str or bytes, not {type(password).__name__}")
    if not 1 <= len(raw) <= MAX_PASSWORD_BYTES:
        raise InvalidInputError(
            f"a password is 1 to {MAX_PASSWORD_BYTES} bytes (UTF-8), not {len(raw)}"
        )
    return raw


def _plaintext(plaintext: str | bytes) -> bytes:
    if isinstance(plaintext, str):
        try:
            raw = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("the plaintext is not valid Unicode text") from None
    elif isinstance(plaintext, bytes | bytearray | memoryview):
        raw = bytes(plaintext)
    else:
        raise InputTypeError(f"a plaintext is bytes or str, not {type(plaintext).__name__}")
    if len(raw) > MAX_PLAINTEXT_BYTES:
        raise InvalidInputError(f"a secret is at most {MAX_PLAINTEXT_BYTES} bytes, not {len(raw)}")
    return raw


def encrypt(
    plaintext: str | bytes, password: str | bytes, *, key_version: int = CURRENT_KEY_VERSION
) -> EncryptedData:
    """Encrypt `plaintext` (bytes, or str as UTF-8) under `password` with a
    fresh salt and IV; see the module documentation."""
    version = _check_version(key_version)
    salt, iv, data = _native._encrypt(
        _plaintext(plaintext), _password(password), ITERATIONS[version]
    )
    return EncryptedData(version, salt, iv, data)


def decrypt(encrypted: EncryptedData | Mapping[str, Any], password: str | bytes) -> bytes:
    """The plaintext of `encrypted` (an `EncryptedData` or its stored
    form). `DecryptionError` when the password is wrong or the blob was
    changed; `InvalidInputError` when it is not an encrypted secret."""
    sealed = (
        encrypted if isinstance(encrypted, EncryptedData) else EncryptedData.from_dict(encrypted)
    )
    plain = _native._decrypt(
        _password(password), sealed.salt, sealed.iv, sealed.data, ITERATIONS[sealed.key_version]
    )
    if plain is None:
        raise DecryptionError("the secret does not decrypt: a wrong password, or a changed blob")
    return plain
