"""The native payload encoder writes exactly what ``json.dumps`` writes."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkdev_storage._native import json_dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500)
@given(json_values)
def test_matches_json_dumps(value: Any) -> None:
    assert json_dumps(value) == json.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        0.1,
        70368744177664.12,  # exactly halfway between two shortest forms: repr rounds to even
        1e15,
        1e16,
        1.5e16,
        1e-4,
        1e-5,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        123456789012345678.0,
        2**64,
        -(2**70),
        '\x00\x1f\x7f é ☃ 𝄞 "quoted" back\\slash \b\f\n\r\t',
        {"nested": [1, {"a": None}], "": True},
        (),
        {},
    ],
)
def test_edge_values(value: Any) -> None:
    assert json_dumps(value) == json.dumps(value)


def test_other_types_go_through_the_python_encoder() -> None:
    class Text(str):
        pass

    assert json_dumps({1: Text("x"), None: 2.5}) == json.dumps({1: "x", None: 2.5})
    assert json_dumps("\ud800") == json.dumps("\ud800")
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    assert json_dumps(deep) == json.dumps(deep)


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": -math.inf}, object(), {1, 2}, b"x"])
def test_non_json_values_are_refused(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="JSON"):
        json_dumps(bad)


def test_circular_references_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="JSON"):
        json_dumps(loop)


def test_floats_match_repr_in_bulk() -> None:
    """repr's digits for many doubles at once: random bit patterns, and
    values with few significant bits, where ties between two shortest
    forms are common."""
    rng = random.Random(20261130)
    values = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(50_000)
    ]
    values += [rng.randrange(1, 2**20) * 2.0 ** rng.randrange(-60, 60) for _ in range(50_000)]
    values = [v for v in values if math.isfinite(v)]
    assert json_dumps(values) == json.dumps(values)
