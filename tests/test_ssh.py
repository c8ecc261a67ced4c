"""OpenSSH public keys: our fingerprints agree with ssh-keygen's, and every
malformed key is refused with InvalidPublicKeyError (never another error)."""

from __future__ import annotations

import base64
import doctest
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkdev_storage import ssh
from alkdev_storage.errors import InvalidPublicKeyError
from alkdev_storage.ssh import PublicKey, fingerprint, parse_public_key

# ---------------------------------------------------------------- wire format


def string(data: bytes | str) -> bytes:
    """An SSH ``string``: uint32 big-endian length, then the bytes."""
    raw = data.encode() if isinstance(data, str) else data
    return len(raw).to_bytes(4, "big") + raw


def line(key_type: str, blob: bytes, comment: str | None = None) -> str:
    text = f"{key_type} {base64.b64encode(blob).decode()}"
    return text if comment is None else f"{text} {comment}"


def positive_mpint(value: int) -> bytes:
    """Minimal encoding with the 0x00 the sign needs when the top bit is set."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return string(b"\0" + raw if raw[0] & 0x80 else raw)


# Generator points of the NIST curves (SEC 2): valid keys without ssh-keygen.
G = {
    "nistp256": (
        0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        32,
    ),
    "nistp384": (
        int(
            "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
            "5502F25DBF55296C3A545E3872760AB7",
            16,
        ),
        int(
            "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
            "0A60B1CE1D7E819D7A431D7C90EA0E5F",
            16,
        ),
        48,
    ),
    "nistp521": (
        int(
            "00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D"
            "3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5BD66",
            16,
        ),
        int(
            "011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E"
            "662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD16650",
            16,
        ),
        66,
    ),
}

P = {
    "nistp256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "nistp384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "nistp521": 2**521 - 1,
}


def point(curve: str, dx: int = 0, dy: int = 0) -> bytes:
    x, y, size = G[curve]
    return b"\x04" + (x + dx).to_bytes(size, "big") + (y + dy).to_bytes(size, "big")


def curve_b(curve: str) -> int:
    """The curve's b, from its generator: y^2 = x^3 - 3x + b (mod p)."""
    x, y, _ = G[curve]
    p = P[curve]
    return (y * y - x * x * x + 3 * x) % p


def small_x_point(curve: str) -> tuple[int, int]:
    """A point on the curve with a small x (every NIST p is 3 mod 4, so a
    square root is one exponentiation)."""
    p, b = P[curve], curve_b(curve)
    for x in range(1, 1000):
        rhs = (x**3 - 3 * x + b) % p
        y = pow(rhs, (p + 1) // 4, p)
        if y * y % p == rhs:
            return x, y
    raise AssertionError("no small x found")


def raw_point(curve: str, x: int, y: int) -> bytes:
    size = G[curve][2]
    return b"\x04" + x.to_bytes(size, "big") + y.to_bytes(size, "big")


def ed25519_blob(key: bytes = bytes(range(32))) -> bytes:
    return string("ssh-ed25519") + string(key)


RSA_N = (1 << 2047) | (0xC0FFEE << 8) | 1  # 2048 bits, odd; primality is not checked
RSA_E = 65537


def rsa_blob(e: bytes | None = None, n: bytes | None = None) -> bytes:
    return (
        string("ssh-rsa")
        + (positive_mpint(RSA_E) if e is None else e)
        + (positive_mpint(RSA_N) if n is None else n)
    )


def ecdsa_blob(curve: str, *, name: str | None = None, pt: bytes | None = None) -> bytes:
    return (
        string(f"ecdsa-sha2-{curve}")
        + string(name or curve)
        + string(point(curve) if pt is None else pt)
    )


VALID = {
    "ssh-ed25519": (ed25519_blob(), 256),
    "ssh-rsa": (rsa_blob(), 2048),
    "ecdsa-sha2-nistp256": (ecdsa_blob("nistp256"), 256),
    "ecdsa-sha2-nistp384": (ecdsa_blob("nistp384"), 384),
    "ecdsa-sha2-nistp521": (ecdsa_blob("nistp521"), 521),
}

# Generated once with `ssh-keygen -t ed25519`; the fingerprint is what
# `ssh-keygen -lf` printed for it.
ALICE = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqZyiArqjIJSJLRWFYoIzhzDfz0sqI+ra5grnwkaxIM"
    " alice@example.com"
)
ALICE_FP = "SHA256:VMz/1EF5gvVE/nwVjH/DO1B7YF3pc8jUqA7GGUVzrkQ"


# ----------------------------------------------------------------- ssh-keygen


@pytest.fixture(scope="module")
def ssh_keygen() -> str:
    path = shutil.which("ssh-keygen")
    if path is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("ssh-keygen is not on PATH; .ci/run installs openssh-client")
        pytest.skip("ssh-keygen is not on PATH (install openssh-client to run this)")
    return path


def keygen_fingerprint(ssh_keygen: str, pub: Path) -> tuple[int, str, str]:
    """``ssh-keygen -lf``: (bits, fingerprint, the rest of the line)."""
    out = subprocess.run(
        [ssh_keygen, "-l", "-E", "sha256", "-f", str(pub)],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    ).stdout
    bits, fp, rest = out.strip().split(" ", 2)
    return int(bits), fp, rest


@pytest.mark.parametrize(
    ("args", "key_type", "bits"),
    [
        (["-t", "ed25519"], "ssh-ed25519", 256),
        (["-t", "rsa", "-b", "2048"], "ssh-rsa", 2048),
        (["-t", "rsa", "-b", "4096"], "ssh-rsa", 4096),
        (["-t", "ecdsa", "-b", "256"], "ecdsa-sha2-nistp256", 256),
        (["-t", "ecdsa", "-b", "384"], "ecdsa-sha2-nistp384", 384),
        (["-t", "ecdsa", "-b", "521"], "ecdsa-sha2-nistp521", 521),
    ],
    ids=["ed25519", "rsa2048", "rsa4096", "ecdsa256", "ecdsa384", "ecdsa521"],
)
def test_agrees_with_ssh_keygen(
    ssh_keygen: str, tmp_path: Path, args: list[str], key_type: str, bits: int
) -> None:
    subprocess.run(
        [ssh_keygen, "-q", *args, "-N", "", "-f", str(tmp_path / "k"), "-C", "me@host"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    pub = tmp_path / "k.pub"
    their_bits, their_fp, _ = keygen_fingerprint(ssh_keygen, pub)

    key = parse_public_key(pub.read_text())

    assert key.fingerprint == their_fp
    assert key.bits == their_bits == bits
    assert key.key_type == key_type
    assert key.comment == "me@host"
    assert key.openssh == pub.read_text().strip()
    assert parse_public_key(key.openssh).fingerprint == their_fp
    assert parse_public_key(key.openssh) == key
    assert fingerprint(pub.read_text()) == their_fp


@pytest.mark.parametrize("key_type", list(VALID))
def test_synthetic_keys_agree_with_ssh_keygen(
    ssh_keygen: str, tmp_path: Path, key_type: str
) -> None:
    """The hand-built keys the rejection tests start from are ones OpenSSH
    itself accepts, so each rejection below is about the one change made."""
    blob, bits = VALID[key_type]
    pub = tmp_path / "k.pub"
    pub.write_text(line(key_type, blob, "synthetic") + "\n")
    their_bits, their_fp, _ = keygen_fingerprint(ssh_keygen, pub)
    key = parse_public_key(pub.read_text())
    assert (key.bits, key.fingerprint) == (their_bits, their_fp) == (bits, their_fp)


# ---------------------------------------------------------------- valid input


def test_docstring_examples() -> None:
    result = doctest.testmod(ssh, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_known_key() -> None:
    key = parse_public_key(ALICE)
    assert key.fingerprint == ALICE_FP
    assert key == PublicKey(
        "ssh-ed25519", base64.b64decode(ALICE.split()[1]), "alice@example.com", 256
    )
    assert key.openssh == ALICE


@pytest.mark.parametrize("key_type", list(VALID))
def test_valid_synthetic_keys(key_type: str) -> None:
    blob, bits = VALID[key_type]
    key = parse_public_key(line(key_type, blob))
    assert (key.key_type, key.blob, key.bits, key.comment) == (key_type, blob, bits, None)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert key.fingerprint == f"SHA256:{digest}"
    assert "=" not in key.fingerprint


@pytest.mark.parametrize(
    ("text", "comment"),
    [
        (f"  {ALICE}\n", "alice@example.com"),
        (f"{ALICE}\r\n", "alice@example.com"),
        (ALICE.replace(" ", "\t", 1), "alice@example.com"),
        (ALICE.replace(" ", "   ", 1), "alice@example.com"),
        (ALICE.rsplit(" ", 1)[0] + " my laptop key", "my laptop key"),
        (ALICE.rsplit(" ", 1)[0] + " clé de été", "clé de été"),
        (ALICE.rsplit(" ", 1)[0] + " \t ", None),
        (ALICE.rsplit(" ", 1)[0], None),
    ],
    ids=["padded", "crlf", "tab", "spaces", "comment-spaces", "unicode", "blank", "none"],
)
def test_whitespace_and_comments(text: str, comment: str | None) -> None:
    key = parse_public_key(text)
    assert key.fingerprint == ALICE_FP
    assert key.comment == comment
    assert parse_public_key(key.openssh) == key


def test_exactly_the_size_limit_is_accepted() -> None:
    text = ALICE + " " + "x" * (ssh.MAX_TEXT_BYTES - len(ALICE) - 1)
    assert len(text.encode()) == ssh.MAX_TEXT_BYTES
    assert parse_public_key(text).fingerprint == ALICE_FP
    with pytest.raises(InvalidPublicKeyError, match="over 16384 bytes"):
        parse_public_key(text + "x")


def test_rsa_bounds_are_inclusive() -> None:
    for n_bits in (1024, 16384):
        n = (1 << (n_bits - 1)) | 1
        assert parse_public_key(line("ssh-rsa", rsa_blob(n=positive_mpint(n)))).bits == n_bits
    assert parse_public_key(line("ssh-rsa", rsa_blob(e=positive_mpint(3)))).bits == 2048


def test_non_str_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_public_key(ALICE.encode())  # type: ignore[arg-type]


# -------------------------------------------------------------- invalid input

ED = VALID["ssh-ed25519"][0]
P256 = "ecdsa-sha2-nistp256"


def _non_canonical() -> str:
    text = line("ssh-ed25519", ED + b"\0")  # 52 bytes: the last char holds 4 spare bits
    assert text.endswith("A==")
    return text[:-3] + "B=="


BAD = {
    # the text
    "empty": ("", "empty"),
    "blank": (" \t\n ", "empty"),
    "type-only": ("ssh-ed25519", "no base64 key data"),
    "type-only-padded": ("ssh-ed25519 \t \n", "no base64 key data"),
    "unknown-type": ("ssh-dss " + ALICE.split()[1], "unsupported key type 'ssh-dss'"),
    "security-key": ("sk-ssh-ed25519@openssh.com AAAA", "unsupported key type"),
    "uppercase-type": (ALICE.upper(), "unsupported key type"),
    "just-base64": (ALICE.split()[1], "unsupported key type"),
    "cert": ("ssh-ed25519-cert-v01@openssh.com AAAA me", "certificate"),
    "rsa-cert": ("ssh-rsa-cert-v01@openssh.com AAAA", "certificate"),
    "options": (f'from="10.0.0.1" {ALICE}', "options"),
    "options-quoted-space": (f'command="echo hi there",no-pty {ALICE}', "options"),
    "restrict": (f"restrict {ALICE}", "options"),
    "two-lines": (f"{ALICE}\n{ALICE}", "several lines"),
    "cr": (ALICE.replace(" alice", "\ralice"), "several lines"),
    "line-separator": (ALICE + "\u2028x", "several lines"),
    "nul-comment": (ALICE + "\0", "printable"),
    "nul-in-comment": (ALICE.replace("@", "\0"), "printable"),
    "bell-comment": (ALICE.replace("@", "\a"), "printable"),
    "surrogate-comment": (ALICE.replace("@", "\ud800"), "printable"),
    "nul-type": ("ssh-ed25519\0 " + ALICE.split()[1], "unsupported key type"),
    "nul-base64": (ALICE.replace("AAAAI", "AAA\0I"), "not valid base64"),
    "huge": (ALICE + " " + "x" * 20_000, "over 16384 bytes"),
    "huge-utf8": (ALICE + " " + "é" * 8200, "over 16384 bytes"),
    "huge-blank": (" " * 20_000, "over 16384 bytes"),
    # the base64
    "bad-base64": ("ssh-ed25519 AAAA!!!!", "not valid base64"),
    "bad-padding": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A", "not valid base64"),
    "non-ascii-base64": ("ssh-ed25519 AAAAé", "not valid base64"),
    "url-safe-base64": (
        line("ssh-ed25519", string("ssh-ed25519") + string(b"\xfb" * 32))
        .replace("+", "-")
        .replace("/", "_"),
        "not valid base64",
    ),
    "non-canonical-base64": (_non_canonical(), "not canonical base64"),
    "garbage": (line("ssh-ed25519", b"\xff" * 40), "truncated"),
    "garbage-text": ("ssh-rsa " + base64.b64encode(b"hello, world").decode(), "truncated"),
    # the key data
    "type-mismatch": (line("ssh-rsa", ED), "names another key type, b'ssh-ed25519'"),
    "curve-type-mismatch": (line(P256, ecdsa_blob("nistp384")), "names another key type"),
    "empty-inner-type": (line("ssh-ed25519", string("") + string(bytes(32))), "another key type"),
    "ed25519-31": (line("ssh-ed25519", ed25519_blob(bytes(31))), "32 bytes, got 31"),
    "ed25519-33": (line("ssh-ed25519", ed25519_blob(bytes(33))), "32 bytes, got 33"),
    "ed25519-0": (line("ssh-ed25519", ed25519_blob(b"")), "32 bytes, got 0"),
    "ed25519-trailing": (line("ssh-ed25519", ED + b"\0"), "1 unexpected bytes"),
    "ed25519-trailing-string": (line("ssh-ed25519", ED + string(b"")), "4 unexpected bytes"),
    "rsa-trailing": (line("ssh-rsa", rsa_blob() + b"x"), "unexpected bytes"),
    "ecdsa-trailing": (line(P256, ecdsa_blob("nistp256") + b"x"), "unexpected bytes"),
    "rsa-512": (line("ssh-rsa", rsa_blob(n=positive_mpint((1 << 511) | 1))), "512 bits"),
    "rsa-1023": (line("ssh-rsa", rsa_blob(n=positive_mpint((1 << 1022) | 1))), "1023 bits"),
    "rsa-16385": (line("ssh-rsa", rsa_blob(n=positive_mpint((1 << 16384) | 1))), "16385 bits"),
    "rsa-even-e": (line("ssh-rsa", rsa_blob(e=positive_mpint(65536))), "must be odd"),
    "rsa-e-1": (line("ssh-rsa", rsa_blob(e=positive_mpint(1))), "at least 3"),
    "rsa-e-n": (line("ssh-rsa", rsa_blob(e=positive_mpint(RSA_N))), "below the modulus"),
    "rsa-zero-e": (line("ssh-rsa", rsa_blob(e=string(b""))), "exponent e is zero"),
    "rsa-negative-n": (
        line("ssh-rsa", rsa_blob(n=string(RSA_N.to_bytes(256, "big")))),
        "modulus n is negative",
    ),
    "rsa-negative-e": (line("ssh-rsa", rsa_blob(e=string(b"\x81\x01"))), "e is negative"),
    "rsa-padded-n": (
        line("ssh-rsa", rsa_blob(n=string(b"\0" + ((1 << 2046) | 1).to_bytes(256, "big")))),
        "not minimally encoded",
    ),
    "rsa-padded-e": (line("ssh-rsa", rsa_blob(e=string(b"\0\x01\x00\x01"))), "minimally"),
    "rsa-zero-byte-e": (line("ssh-rsa", rsa_blob(e=string(b"\0"))), "minimally"),
    "rsa-missing-n": (line("ssh-rsa", string("ssh-rsa") + positive_mpint(RSA_E)), "truncated"),
    "ecdsa-curve-name": (line(P256, ecdsa_blob("nistp256", name="nistp384")), "curve b'nistp"),
    "ecdsa-curve-junk": (line(P256, ecdsa_blob("nistp256", name="secp256r1")), "expected"),
    "ecdsa-compressed": (
        line(P256, ecdsa_blob("nistp256", pt=b"\x02" + point("nistp256")[1:33])),
        "compressed",
    ),
    "ecdsa-compressed-03": (
        line(P256, ecdsa_blob("nistp256", pt=b"\x03" + point("nistp256")[1:33])),
        "compressed",
    ),
    "ecdsa-short": (
        line(P256, ecdsa_blob("nistp256", pt=point("nistp256")[:64])),
        "65 bytes, got 64",
    ),
    "ecdsa-long": (line(P256, ecdsa_blob("nistp256", pt=point("nistp256") + b"\0")), "got 66"),
    "ecdsa-384-point-in-256": (
        line(P256, ecdsa_blob("nistp256", pt=point("nistp384"))),
        "65 bytes, got 97",
    ),
    "ecdsa-hybrid": (
        line(P256, ecdsa_blob("nistp256", pt=b"\x06" + point("nistp256")[1:])),
        "start with 0x04",
    ),
    "ecdsa-infinity": (line(P256, ecdsa_blob("nistp256", pt=b"\0")), "65 bytes, got 1"),
    "ecdsa-off-curve": (line(P256, ecdsa_blob("nistp256", pt=point("nistp256", dy=1))), "not on"),
    "ecdsa-521-off-curve": (
        line("ecdsa-sha2-nistp521", ecdsa_blob("nistp521", pt=point("nistp521", dx=1))),
        "not on the nistp521 curve",
    ),
    "ecdsa-missing-point": (line(P256, string(P256) + string("nistp256")), "truncated"),
}


@pytest.mark.parametrize(("text", "message"), list(BAD.values()), ids=list(BAD))
def test_rejected(text: str, message: str) -> None:
    with pytest.raises(InvalidPublicKeyError, match=re.escape(message)) as info:
        parse_public_key(text)
    assert len(str(info.value)) < 300, "messages quote hostile input only briefly"


@pytest.mark.parametrize("key_type", list(VALID))
def test_every_truncation_is_rejected(key_type: str) -> None:
    blob, _ = VALID[key_type]
    for cut in range(1, len(blob)):
        with pytest.raises(InvalidPublicKeyError, match="truncated"):
            parse_public_key(line(key_type, blob[:cut]))


@pytest.mark.parametrize("curve", list(G))
def test_ecdsa_coordinates_must_be_reduced(curve: str) -> None:
    """(x + p, y) satisfies the curve equation mod p but is not a valid
    encoding of the point (x, y); only the reduced form is accepted."""
    key_type = f"ecdsa-sha2-{curve}"
    x, y = small_x_point(curve)
    assert parse_public_key(line(key_type, ecdsa_blob(curve, pt=raw_point(curve, x, y))))
    big_x = raw_point(curve, x + P[curve], y)
    with pytest.raises(InvalidPublicKeyError, match=f"not on the {curve} curve"):
        parse_public_key(line(key_type, ecdsa_blob(curve, pt=big_x)))
    negative_y = raw_point(curve, x, P[curve] - y)  # the point's mirror image: also valid
    assert parse_public_key(line(key_type, ecdsa_blob(curve, pt=negative_y)))


def test_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        fingerprint("ssh-ed25519 AAAA")


# ------------------------------------------------------------------ hypothesis

TYPES = st.sampled_from(list(VALID))


def _parses_or_refuses(text: str) -> None:
    try:
        key = parse_public_key(text)
    except InvalidPublicKeyError as exc:
        assert str(exc)
    else:
        assert parse_public_key(key.openssh) == key
        assert key.fingerprint.startswith("SHA256:")


@settings(deadline=None)
@given(st.text())
def test_fuzz_any_text(text: str) -> None:
    _parses_or_refuses(text)


@settings(deadline=None)
@given(TYPES, st.text(alphabet=st.characters(codec="utf-8")))
def test_fuzz_text_after_a_type(key_type: str, rest: str) -> None:
    _parses_or_refuses(f"{key_type} {rest}")


@settings(deadline=None)
@given(TYPES, st.binary(max_size=300), st.none() | st.text())
def test_fuzz_any_bytes_as_base64(key_type: str, data: bytes, comment: str | None) -> None:
    _parses_or_refuses(line(key_type, data, comment))


@st.composite
def ssh_fields(draw: st.DrawFn) -> tuple[str, bytes]:
    """Key data shaped like the real thing: the right or a wrong type name,
    then strings/mpints of plausible and implausible sizes."""
    key_type = draw(TYPES)
    inner = draw(st.sampled_from([key_type, *VALID, "", "ssh-dss"]))
    fields = [string(inner)]
    for _ in range(draw(st.integers(0, 4))):
        fields.append(
            draw(
                st.one_of(
                    st.binary(max_size=140).map(string),
                    st.sampled_from(["nistp256", "nistp384", "nistp521"]).map(string),
                    st.integers(0, 2**2100).map(
                        lambda n: string(n.to_bytes((n.bit_length() + 8) // 8, "big"))
                    ),
                    st.binary(max_size=6),  # raw bytes, breaking the framing
                )
            )
        )
    return key_type, b"".join(fields)


@settings(deadline=None, max_examples=300)
@given(ssh_fields())
def test_fuzz_structured_key_data(key: tuple[str, bytes]) -> None:
    _parses_or_refuses(line(*key))


@settings(deadline=None, max_examples=300)
@given(TYPES, st.data())
def test_fuzz_mutated_valid_keys(key_type: str, data: st.DataObject) -> None:
    blob = bytearray(VALID[key_type][0])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            blob[at] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(blob) > 1:
            del blob[at]
    _parses_or_refuses(line(key_type, bytes(blob)))


@given(st.binary(min_size=32, max_size=32), st.none() | st.text())
def test_ed25519_round_trip(key: bytes, comment: str | None) -> None:
    text = line("ssh-ed25519", ed25519_blob(key), comment)
    try:
        parsed = parse_public_key(text)
    except InvalidPublicKeyError:
        # Only a comment that is blank, multi-line or has control characters.
        assert comment is not None
        return
    expected = hashlib.sha256(ed25519_blob(key)).digest()
    assert parsed.fingerprint == "SHA256:" + base64.b64encode(expected).decode().rstrip("=")
    assert parse_public_key(parsed.openssh) == parsed
    assert parsed.blob[-32:] == key
