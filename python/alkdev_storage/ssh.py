"""OpenSSH public keys: parsed, checked and fingerprinted (pure Python).

Peer credentials are stored under the fingerprint computed here, so it is
exactly what ``ssh-keygen -lf key.pub`` prints:

>>> from alkdev_storage.ssh import parse_public_key, fingerprint
>>> line = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqZyiArqjIJSJLRWFYoIzhzDfz0sqI+ra5grnwkaxIM"
...         " alice@example.com")
>>> key = parse_public_key(line)
>>> key.key_type, key.bits, key.comment
('ssh-ed25519', 256, 'alice@example.com')
>>> key.fingerprint
'SHA256:VMz/1EF5gvVE/nwVjH/DO1B7YF3pc8jUqA7GGUVzrkQ'
>>> fingerprint(line) == key.fingerprint
True
>>> from alkdev_storage.errors import InvalidPublicKeyError
>>> try:
...     parse_public_key("ssh-ed25519 AAAA")
... except InvalidPublicKeyError as e:
...     print(e)
ssh-ed25519 key data is truncated reading the key type name (needs a 4-byte length, 3 bytes left)

Accepted: one line of a ``.pub`` file or of ``authorized_keys`` *without*
options, ``<type> <base64> [comment]``, for ``ssh-ed25519``, ``ssh-rsa``
(1024 to 16384 bits, OpenSSH's own bounds) and ``ecdsa-sha2-nistp256/384/521``.
The key data is checked field by field (RFC 4253, 5656, 8709): the type named
inside it matches the type in front of it, RSA integers are positive and
minimally encoded, ECDSA points are uncompressed and on their curve, and
nothing trails the last field. The base64 must be canonical, so one key has
one text form and ``key.openssh`` gives it back. Certificates are refused:
to trust a certificate authority, register the CA's own public key.
Anything else raises `InvalidPublicKeyError` saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass

from alkdev_storage._checks import shown
from alkdev_storage.errors import InputTypeError, InvalidPublicKeyError

__all__ = ["PublicKey", "fingerprint", "parse_public_key"]

# The longest line accepted. The biggest key accepted (RSA-16384) is under
# 3 KiB of text; the bound keeps hostile input from costing anything.
MAX_TEXT_BYTES = 16 * 1024

_RSA_MIN_BITS = 1024
_RSA_MAX_BITS = 16384  # OpenSSH's SSH_RSA_MAXIMUM_MODULUS_SIZE


@dataclass(frozen=True, slots=True)
class _Curve:
    name: str  # the curve identifier inside the key data
    bits: int
    p: int
    b: int  # y^2 = x^3 - 3x + b (mod p), as for every NIST prime curve

    @property
    def point_len(self) -> int:
        return 1 + 2 * ((self.bits + 7) // 8)


# SEC 2 / FIPS 186-4 domain parameters. The cofactor of each is 1, so a point
# on the curve other than infinity (which 0x04 cannot encode) is a valid key.
_CURVES = {
    "ecdsa-sha2-nistp256": _Curve(
        "nistp256",
        256,
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    ),
    "ecdsa-sha2-nistp384": _Curve(
        "nistp384",
        384,
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            16,
        ),
    ),
    "ecdsa-sha2-nistp521": _Curve(
        "nistp521",
        521,
        2**521 - 1,
        int(
            "051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF10"
            "9E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
    ),
}

_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", *_CURVES)
_CERT_SUFFIX = "-cert-v01@openssh.com"

# OpenSSH separates the fields with spaces or tabs; the comment is the rest.
_FIELDS = re.compile(r"[ \t]+")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An OpenSSH public key. Build one with `parse_public_key`.

    ``blob`` is the decoded key data (the SSH wire format), ``bits`` the key
    size as ``ssh-keygen -l`` reports it.

    >>> key = parse_public_key(
    ...     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqZyiArqjIJSJLRWFYoIzhzDfz0sqI+ra5grnwkaxIM")
    >>> key.comment is None, len(key.blob)
    (True, 51)
    >>> key.openssh
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqZyiArqjIJSJLRWFYoIzhzDfz0sqI+ra5grnwkaxIM'
    """

    key_type: str
    blob: bytes
    comment: str | None
    bits: int

    @property
    def fingerprint(self) -> str:
        """``SHA256:`` and the unpadded base64 of the key data's SHA-256, as
        ``ssh-keygen -lf`` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    @property
    def openssh(self) -> str:
        """The key as one canonical ``.pub`` line: type, base64, comment."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"
        return text if self.comment is None else f"{text} {self.comment}"


def fingerprint(text: str) -> str:
    """The ``SHA256:…`` fingerprint of a public key line; see `parse_public_key`.

    >>> fingerprint(
    ...     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqZyiArqjIJSJLRWFYoIzhzDfz0sqI+ra5grnwkaxIM")
    'SHA256:VMz/1EF5gvVE/nwVjH/DO1B7YF3pc8jUqA7GGUVzrkQ'
    """
    return parse_public_key(text).fingerprint


def parse_public_key(text: str) -> PublicKey:
    """Parse and check one OpenSSH public key line, ``<type> <base64> [comment]``.

    Whitespace around the line (such as the newline that ends a ``.pub``
    file) is ignored. Raises `InvalidPublicKeyError` saying what is wrong.

    >>> parse_public_key("ssh-dss AAAAB3NzaC1kc3M=")
    Traceback (most recent call last):
      ...
    alkdev_storage.errors.InvalidPublicKeyError: unsupported key type 'ssh-dss'; ...
    """
    if not isinstance(text, str):
        raise InputTypeError(f"expected the key as str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise InvalidPublicKeyError(
            f"public key text is over {MAX_TEXT_BYTES} bytes; "
            "an OpenSSH public key is one short line"
        )
    line = text.strip()
    if not line:
        raise InvalidPublicKeyError("public key text is empty")
    if len(line.splitlines()) > 1:
        raise InvalidPublicKeyError(
            "public key text spans several lines; give one key, on one line"
        )

    fields = _FIELDS.split(line, maxsplit=2)
    key_type = fields[0]
    if key_type not in _KEY_TYPES:
        raise InvalidPublicKeyError(_explain_unknown_type(key_type, fields))
    if len(fields) < 2:
        raise InvalidPublicKeyError(f"{key_type} key has no base64 key data after its type")
    comment = _check_comment(fields[2]) if len(fields) == 3 else None

    blob = _decode_base64(key_type, fields[1])
    bits = _check_blob(key_type, blob)
    return PublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)


def _explain_unknown_type(key_type: str, fields: list[str]) -> str:
    if key_type.endswith(_CERT_SUFFIX):
        return (
            f"{_show(key_type)} is an OpenSSH certificate, not a public key; "
            "to trust a certificate authority, register the CA's own public key"
        )
    if any(word in _KEY_TYPES for word in _FIELDS.split(" ".join(fields[1:]))):
        return (
            'authorized_keys options (such as from="..." or no-pty) are not accepted; '
            "give the key alone: <type> <base64> [comment]"
        )
    return f"unsupported key type {_show(key_type)}; expected one of {', '.join(_KEY_TYPES)}"


def _check_comment(comment: str) -> str:
    for char in comment:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidPublicKeyError(
                f"public key comment contains {shown(char)}; a comment is printable text"
            )
    return comment


def _decode_base64(key_type: str, data: str) -> bytes:
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPublicKeyError(f"{key_type} key data is not valid base64 ({exc})") from None
    # Python accepts set bits after the last whole byte ("AB==" and "AA==" are
    # both b"\x00"); OpenSSH's decoder does too. Refusing them gives each key
    # one text form.
    if base64.b64encode(blob).decode("ascii") != data:
        raise InvalidPublicKeyError(f"{key_type} key data is not canonical base64")
    return blob


def _check_blob(key_type: str, blob: bytes) -> int:
    """Check the wire-format key data of `key_type`; return its size in bits."""
    reader = _Reader(key_type, blob)
    inner_type = reader.string("key type name")
    if inner_type != key_type.encode("ascii"):
        raise InvalidPublicKeyError(
            f"{key_type} key data names another key type, {_show(inner_type)}"
        )
    if key_type == "ssh-ed25519":
        key = reader.string("Ed25519 key")
        if len(key) != 32:
            raise InvalidPublicKeyError(f"ssh-ed25519 key must be 32 bytes, got {len(key)}")
        bits = 256
    elif key_type == "ssh-rsa":
        e = reader.mpint("RSA exponent e")
        n = reader.mpint("RSA modulus n")
        bits = n.bit_length()
        if not _RSA_MIN_BITS <= bits <= _RSA_MAX_BITS:
            raise InvalidPublicKeyError(
                f"ssh-rsa modulus is {bits} bits; expected {_RSA_MIN_BITS} to {_RSA_MAX_BITS} bits"
            )
        if e < 3 or e % 2 == 0 or e >= n:
            raise InvalidPublicKeyError(
                "ssh-rsa exponent e must be odd, at least 3 and below the modulus"
            )
    else:
        curve = _CURVES[key_type]
        name = reader.string("ECDSA curve name")
        if name != curve.name.encode("ascii"):
            raise InvalidPublicKeyError(
                f"{key_type} key data names the curve {_show(name)}, expected {shown(curve.name)}"
            )
        point = reader.string("ECDSA point")
        _check_point(key_type, curve, point)
        bits = curve.bits
    if reader.remaining:
        raise InvalidPublicKeyError(
            f"{key_type} key data has {reader.remaining} unexpected bytes after the key"
        )
    return bits


def _check_point(key_type: str, curve: _Curve, point: bytes) -> None:
    if len(point) != curve.point_len:
        if point[:1] in (b"\x02", b"\x03"):
            raise InvalidPublicKeyError(
                f"{key_type} point is compressed; OpenSSH keys use the uncompressed form"
            )
        raise InvalidPublicKeyError(
            f"{key_type} point must be {curve.point_len} bytes, got {len(point)}"
        )
    if point[0] != 0x04:
        raise InvalidPublicKeyError(
            f"{key_type} point must be uncompressed (start with 0x04), starts with 0x{point[0]:02x}"
        )
    size = (curve.point_len - 1) // 2
    x = int.from_bytes(point[1 : 1 + size], "big")
    y = int.from_bytes(point[1 + size :], "big")
    p = curve.p
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + curve.b)) % p != 0:
        raise InvalidPublicKeyError(f"{key_type} point is not on the {curve.name} curve")


class _Reader:
    """Reads SSH ``string`` and ``mpint`` fields (RFC 4251 §5) off the key data."""

    __slots__ = ("_blob", "_key_type", "_offset")

    def __init__(self, key_type: str, blob: bytes) -> None:
        self._key_type = key_type
        self._blob = blob
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._blob) - self._offset

    def string(self, what: str) -> bytes:
        if self.remaining < 4:
            raise self._truncated(what, f"needs a 4-byte length, {self.remaining} bytes left")
        length = int.from_bytes(self._blob[self._offset : self._offset + 4], "big")
        self._offset += 4
        if length > self.remaining:
            raise self._truncated(what, f"its length says {length} bytes, {self.remaining} left")
        value = self._blob[self._offset : self._offset + length]
        self._offset += length
        return value

    def mpint(self, what: str) -> int:
        data = self.string(what)
        if not data:
            raise InvalidPublicKeyError(f"{self._key_type} {what} is zero")
        if data[0] & 0x80:
            raise InvalidPublicKeyError(f"{self._key_type} {what} is negative")
        if data[0] == 0 and (len(data) == 1 or not data[1] & 0x80):
            raise InvalidPublicKeyError(
                f"{self._key_type} {what} is not minimally encoded (a needless leading zero byte)"
            )
        return int.from_bytes(data, "big")

    def _truncated(self, what: str, detail: str) -> InvalidPublicKeyError:
        return InvalidPublicKeyError(
            f"{self._key_type} key data is truncated reading the {what} ({detail})"
        )


def _show(value: str | bytes, limit: int = 40) -> str:
    """A short repr for error messages, which may quote hostile input."""
    text = repr(value[:limit])
    return text + "…" if len(value) > limit else text
