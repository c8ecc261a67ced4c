"""``SchemaValidator``: JSON Schema validation in the native core.

Keywords, all violations with their JSON pointers, schemas refused, the
Python-to-JSON conversion, agreement with the pure-Python ``jsonschema``
package on random documents, and threads making progress while it works.

``format`` is an annotation by default (as Draft 2020-12 says, and as the
``jsonschema`` package does for every draft): ``{"format": "email"}`` accepts
any string unless the validator is built with ``validate_formats=True``.
"""

from __future__ import annotations

import collections
import doctest
import enum
import json
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkdev_storage import _native
from alkdev_storage._native import SchemaValidator
from alkdev_storage.errors import InvalidSchemaError, StorageError

NODE = {
    "type": "object",
    "required": ["title", "status"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "status": {"enum": ["open", "done", "archived"]},
        "priority": {"type": "integer", "minimum": 0, "maximum": 5},
        "owner": {"$ref": "#/$defs/person"},
        "items": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "required": ["title"],
                "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
            },
        },
        "email": {"type": "string", "format": "email"},
    },
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string", "pattern": "^u-[0-9]+$"},
                "name": {"type": "string"},
            },
        }
    },
}

VALID = {
    "title": "Write the tests",
    "status": "open",
    "priority": 3,
    "owner": {"id": "u-17", "name": "Ada"},
    "items": [{"title": "a"}, {"title": "b", "done": True}],
}


@pytest.fixture(scope="module")
def node() -> SchemaValidator:
    return SchemaValidator(NODE)


# -- valid and invalid documents ----------------------------------------------


def test_a_valid_document_has_no_violations(node: SchemaValidator) -> None:
    assert node.validate(VALID) == []
    assert node.is_valid(VALID)
    assert node.validate_json(json.dumps(VALID)) == []


@pytest.mark.parametrize(
    ("change", "pointer", "words"),
    [
        ({"title": 7}, "/title", 'is not of type "string"'),
        ({"title": ""}, "/title", "shorter than 1 character"),
        ({"status": "closed"}, "/status", "is not one of"),
        ({"priority": 9}, "/priority", "greater than the maximum of 5"),
        ({"priority": 1.5}, "/priority", 'is not of type "integer"'),
        ({"priority": True}, "/priority", 'is not of type "integer"'),
        ({"owner": {"id": "x-1"}}, "/owner/id", 'does not match "^u-[0-9]+$"'),
        ({"owner": {"name": "Ada"}}, "/owner", '"id" is a required property'),
        ({"items": "none"}, "/items", 'is not of type "array"'),
        ({"items": [{"title": "a"}] * 11}, "/items", "has more than 10 items"),
        ({"items": [{"title": "a"}, {}]}, "/items/1", '"title" is a required'),
        ({"items": [{"title": "a"}, {"title": "b", "done": "no"}]}, "/items/1/done", "boolean"),
        ({"extra": 1}, "", "Additional properties are not allowed ('extra' was unexpected)"),
    ],
)
def test_each_keyword_reports_where(
    node: SchemaValidator, change: dict[str, Any], pointer: str, words: str
) -> None:
    document = {**VALID, **change}
    violations = node.validate(document)
    assert [p for p, _ in violations] == [pointer], violations
    assert words in violations[0][1]
    assert not node.is_valid(document)
    assert node.validate_json(json.dumps(document)) == violations


def test_a_missing_required_property_is_reported_at_its_object(node: SchemaValidator) -> None:
    assert node.validate({"status": "open"}) == [("", '"title" is a required property')]


def test_all_violations_are_reported_sorted(node: SchemaValidator) -> None:
    document = {
        "status": "closed",
        "priority": -1,
        "owner": {"id": 5},
        "items": [{"title": "a"}, {"title": "b"}, {"title": None}, {}],
        "zzz": 1,
    }
    violations = node.validate(document)
    assert violations == sorted(violations)
    assert [p for p, _ in violations] == [
        "",  # "title" is a required property
        "",  # additional property 'zzz'
        "/items/2/title",
        "/items/3",
        "/owner/id",
        "/priority",
        "/status",
    ]
    assert ("/items/2/title", 'null is not of type "string"') in violations


def test_pointers_escape_slash_and_tilde() -> None:
    v = SchemaValidator({"properties": {"a/b~c": {"type": "array", "items": {"type": "null"}}}})
    assert v.validate({"a/b~c": [None, 1]}) == [("/a~1b~0c/1", '1 is not of type "null"')]


def test_ref_to_defs_and_recursion() -> None:
    tree = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
    }
    v = SchemaValidator(tree)
    good = {"name": "root", "children": [{"name": "a", "children": [{"name": "b"}]}]}
    assert v.validate(good) == []
    bad = {"name": "root", "children": [{"name": "a", "children": [{"name": 2}, {}]}]}
    assert v.validate(bad) == [
        ("/children/0/children/0/name", '2 is not of type "string"'),
        ("/children/0/children/1", '"name" is a required property'),
    ]


def test_format_is_an_annotation_unless_asked() -> None:
    schema = {"type": "string", "format": "email"}
    assert SchemaValidator(schema).validate("not an email") == []
    strict = SchemaValidator(schema, validate_formats=True)
    assert strict.validate("ada@example.com") == []
    assert strict.validate("not an email") == [("", '"not an email" is not a "email"')]
    # Draft 7 would assert formats by default in the crate; we keep one rule.
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
    assert SchemaValidator(draft7).validate("not an email") == []


def test_bool_schemas() -> None:
    assert SchemaValidator(True).validate({"anything": [1, None]}) == []
    assert SchemaValidator(False).validate(1) == [("", "False schema does not allow 1")]
    assert SchemaValidator("true").is_valid(None)
    nested = SchemaValidator({"properties": {"no": False}})
    assert [p for p, _ in nested.validate({"no": 1, "yes": 2})] == ["/no"]


def test_schema_as_json_text_and_canonical_text() -> None:
    text = '{"type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}}'
    v = SchemaValidator(text)
    assert v.validate({}) == [("", '"b" is a required property')]
    assert v.schema == '{"properties":{"b":{"type":"integer"}},"required":["b"],"type":"object"}'
    assert json.loads(v.schema) == json.loads(text)
    assert SchemaValidator(json.loads(text)).schema == v.schema
    assert SchemaValidator(True).schema == "true"


def test_draft_is_detected_from_schema_keyword() -> None:
    assert SchemaValidator({}).draft == "2020-12"
    drafts = {
        "http://json-schema.org/draft-04/schema#": "4",
        "http://json-schema.org/draft-06/schema#": "6",
        "http://json-schema.org/draft-07/schema#": "7",
        "https://json-schema.org/draft/2019-09/schema": "2019-09",
        "https://json-schema.org/draft/2020-12/schema": "2020-12",
    }
    for uri, name in drafts.items():
        assert SchemaValidator({"$schema": uri}).draft == name
    # Draft 4: a float is never an "integer"; later drafts accept 1.0.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}
    assert not SchemaValidator(draft4).is_valid(1.0)
    assert SchemaValidator({"type": "integer"}).is_valid(1.0)


def test_repr() -> None:
    v = SchemaValidator(NODE)
    assert repr(v).startswith('<SchemaValidator draft=2020-12 {"$defs":')
    assert repr(v).endswith("...>")
    short = SchemaValidator({"type": "null"})
    assert repr(short) == '<SchemaValidator draft=2020-12 {"type":"null"}>'


def test_docstring_example_runs() -> None:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(SchemaValidator, "SchemaValidator", globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).attempted > 0
    assert runner.summarize(verbose=False).failed == 0


# -- schemas refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "nonsense"}, "at /type:"),
        ({"minimum": "x", "type": "nonsense"}, "(2 problems): at /minimum:"),
        ({"pattern": "("}, 'at /pattern: "(" is not a "regex"'),
        ({"properties": {"a": {"pattern": "[a-"}}}, "at /properties/a/pattern"),
        ({"$ref": "https://example.com/x.json"}, "at /$ref: a reference cannot be resolved"),
        ({"$defs": {"a": {"$ref": "http://example.com/b.json#/x"}}}, "at /$defs/a/$ref"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "at /properties/a/$ref"),
        ({"$schema": "https://example.com/my-meta"}, "unknown draft"),
        ({"$schema": 5}, "at /$schema: 5 is not of type"),
        ({"required": "title"}, "at /required"),
        (42, "must be an object or a boolean, not a number"),
        ([{"type": "string"}], "not an array"),
        (None, "not null"),
        ("[1, 2]", "not an array"),
        ("{not json", "schema text is not valid JSON"),
    ],
)
def test_invalid_schemas_are_refused(schema: Any, words: str) -> None:
    with pytest.raises(InvalidSchemaError) as caught:
        SchemaValidator(schema)
    assert words in str(caught.value)
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.sqlite_errorcode is None


def test_a_remote_ref_is_refused_without_a_fetch() -> None:
    # A fetch would take seconds (or hang) on an address that routes nowhere.
    start = time.perf_counter()
    with pytest.raises(InvalidSchemaError, match="never fetched"):
        SchemaValidator({"$ref": "http://10.255.255.1/schema.json"})
    assert time.perf_counter() - start < 1.0


def test_a_schema_with_a_non_json_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="schema at /enum: type 'set' is not JSON"):
        SchemaValidator({"enum": {1, 2}})


# -- converting Python values -------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(enum.StrEnum):
    ADA = "ada"


@pytest.mark.parametrize(
    ("instance", "error", "words"),
    [
        ({"a": {1, 2}}, TypeError, "instance at /a: type 'set' is not JSON"),
        ([1, b"x"], TypeError, "instance at /1: type 'bytes' is not JSON"),
        ({"a": [Colour.RED]}, TypeError, "instance at /a/0: type 'Colour' is not JSON"),
        ({"a": {1: "x"}}, TypeError, "instance at /a/1: dict keys must be str, not 'int'"),
        (object(), TypeError, "instance (the top-level value): type 'object'"),
        ({"x": float("nan")}, ValueError, "instance at /x: nan is not JSON"),
        ([float("-inf")], ValueError, "instance at /0: -inf is not JSON"),
        ({"big": 2**64}, ValueError, "instance at /big: 18446744073709551616 is outside"),
        ({"s": "\ud800"}, ValueError, "lone surrogates"),
    ],
)
def test_values_without_a_json_form_name_their_path(
    node: SchemaValidator, instance: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        node.validate(instance)
    assert words in str(caught.value)
    with pytest.raises(error):
        node.is_valid(instance)


def test_deep_and_self_containing_values_are_refused() -> None:
    v = SchemaValidator(True)
    deep: Any = "leaf"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 128 levels"):
        v.validate(deep)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        v.validate(loop)
    ok: Any = 1
    for _ in range(100):
        ok = {"a": ok}
    assert v.validate(ok) == []


def test_subclasses_read_as_their_json_type() -> None:
    v = SchemaValidator(
        {
            "type": "object",
            "properties": {
                "level": {"type": "integer", "maximum": 3},
                "name": {"const": "ada"},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            },
        }
    )
    Pair = collections.namedtuple("Pair", "n s")
    document = collections.OrderedDict(level=Level.HIGH, name=Name.ADA, pair=Pair(1, "x"))
    assert v.validate(document) == []
    assert v.validate({"pair": (1, 2)}) == [("/pair/1", '2 is not of type "string"')]


def test_integers_and_floats_at_the_edges() -> None:
    v = SchemaValidator({"type": "integer"})
    for n in (0, -(2**63), 2**63 - 1, 2**64 - 1, 10.0, -0.0):
        assert v.is_valid(n), n
    assert not v.is_valid(0.5)
    assert SchemaValidator({"maximum": 2**63}).validate(2**64 - 1) == [
        ("", "18446744073709551615 is greater than the maximum of 9223372036854775808")
    ]


def test_validate_json_rejects_bad_text(node: SchemaValidator) -> None:
    with pytest.raises(ValueError, match="instance text is not valid JSON"):
        node.validate_json("{'title': 1}")
    with pytest.raises(ValueError, match="not valid JSON"):
        node.validate_json("NaN")


# -- many documents -----------------------------------------------------------------


def test_validate_many_matches_validate(node: SchemaValidator) -> None:
    documents = [VALID, {"title": 1}, {**VALID, "extra": True}, {}]
    many = node.validate_many(documents)
    assert many == [node.validate(d) for d in documents]
    assert many[0] == []
    assert node.validate_many(iter(documents)) == many  # any iterable
    assert node.validate_many(iter(())) == []


@pytest.mark.parametrize("one", [VALID, "text"])
def test_validate_many_refuses_a_single_document(node: SchemaValidator, one: Any) -> None:
    with pytest.raises(TypeError, match="takes an iterable of documents"):
        node.validate_many(one)


def test_validate_many_crosses_chunk_boundaries(node: SchemaValidator) -> None:
    documents = [{**VALID, "priority": i % 7} for i in range(1_000)]
    many = node.validate_many(documents)
    assert len(many) == 1_000
    assert [i for i, v in enumerate(many) if v] == [i for i in range(1_000) if i % 7 == 6]
    with pytest.raises(TypeError, match=r"instances\[700\] at /title"):
        node.validate_many([*documents[:700], {"title": b"x"}])


def test_validate_many_names_the_bad_document(node: SchemaValidator) -> None:
    with pytest.raises(TypeError, match=r"instances\[2\] at /owner/name: type 'set'"):
        node.validate_many([VALID, VALID, {**VALID, "owner": {"id": "u-1", "name": {"x"}}}])


# -- agreement with the pure-Python jsonschema package --------------------------------

SCHEMAS: list[dict[str, Any]] = [
    NODE,
    {
        "type": "object",
        "properties": {
            "n": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 2},
            "s": {"type": "string", "minLength": 2, "pattern": "^[a-c]+$"},
            "l": {"type": "array", "uniqueItems": True, "minItems": 1, "contains": {"const": 1}},
            "o": {"type": "object", "minProperties": 1, "propertyNames": {"maxLength": 2}},
            "e": {"enum": [1, "1", None, [1], {"a": 1}]},
        },
        "patternProperties": {"^x-": {"type": "boolean"}},
        "dependentRequired": {"n": ["s"]},
    },
    {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}],
        "not": {"const": "forbidden"},
    },
    {
        "type": "object",
        "properties": {"kind": {"enum": ["a", "b"]}},
        "if": {"properties": {"kind": {"const": "a"}}},
        "then": {"required": ["a"]},
        "else": {"required": ["b"]},
        "oneOf": [{"required": ["kind"]}, {"maxProperties": 1}],
        "unevaluatedProperties": {"type": ["string", "integer"]},
    },
    {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "null"}],
        "items": {"$ref": "#/$defs/leaf"},
        "$defs": {"leaf": {"type": ["boolean", "number"], "maximum": 10}},
    },
]

keys = st.sampled_from(["title", "status", "priority", "owner", "items", "id", "name", "done"])
keys |= st.sampled_from(["n", "s", "l", "o", "e", "x-a", "x-", "kind", "a", "b", ""])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.integers(min_value=-3, max_value=12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.5, 1.0, 2.0, -0.0, 4.0])
    # No newline: Python's re makes "$" match before a final "\n", ECMA-262 does not.
    # No lone surrogates: they are not JSON text (the validator refuses them).
    | st.text(
        alphabet=st.characters(exclude_characters="\n", exclude_categories=("Cs",)), max_size=6
    )
    | st.sampled_from(["open", "done", "a", "b", "ab", "abc", "u-1", "u-x", "forbidden", "1"])
)
json_documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(keys | st.text(max_size=3), children)
    ),
    max_leaves=25,
)


def python_pointers(validator: Any, instance: Any) -> set[str]:
    def pointer(path: Any) -> str:
        return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)

    return {pointer(e.absolute_path) for e in validator.iter_errors(instance)}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(SCHEMAS))), json_documents)
def test_agrees_with_the_jsonschema_package(which: int, instance: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = SCHEMAS[which]
    theirs = jsonschema.Draft202012Validator(schema)
    ours = SchemaValidator(schema)
    violations = ours.validate(instance)
    assert ours.is_valid(instance) == theirs.is_valid(instance), violations
    assert {p for p, _ in violations} == python_pointers(theirs, instance), violations
    assert ours.validate_json(json.dumps(instance)) == violations


def test_the_schemas_compared_are_valid_for_jsonschema_too() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for schema in SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(schema)


# -- threads ----------------------------------------------------------------------


# With a 1 s switch interval, a thread that holds the GIL through a native
# call keeps it for that whole call: the main thread could then only run
# between calls, a handful of times in all. Released, it runs as often as the
# OS schedules it, whatever else loads the machine.
SWITCH_INTERVAL = 1.0


def _run_eight(work: Any) -> tuple[int, float]:
    """Run `work` on 8 threads; count how often this thread runs meanwhile."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded) for _ in range(8)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        start = time.perf_counter()
        for t in threads:
            t.start()
        ticks = 0
        while any(t.is_alive() for t in threads):
            ticks += 1
            time.sleep(0)  # yield, then count again
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert not errors, errors
    return ticks, time.perf_counter() - start


def _assert_ran_freely(ticks: int, elapsed: float) -> None:
    assert elapsed > 0.05, "the work must be long enough to measure anything"
    # Held, it is 0 (see the control below); released, hundreds at least.
    assert ticks > 100, (ticks, elapsed)


def test_the_harness_sees_a_held_gil() -> None:
    # The control: json_dumps walks Python objects, so it keeps the GIL.
    big = [VALID] * 20_000

    def work() -> None:
        for _ in range(4):
            _native.json_dumps(big)

    ticks, elapsed = _run_eight(work)
    assert elapsed > 0.05
    assert ticks < 20, (ticks, elapsed)


def test_eight_threads_validate_json_while_others_run() -> None:
    array_of_nodes = {
        "type": "array",
        "items": {k: v for k, v in NODE.items() if k != "$defs"},
        "$defs": NODE["$defs"],
    }
    v = SchemaValidator(array_of_nodes)
    # Parsing and validating run detached; the few results are quick to build.
    text = json.dumps([VALID] * 10_000 + [{**VALID, "priority": 9}])
    expected = [("/10000/priority", "9 is greater than the maximum of 5")]
    assert v.validate_json(text) == expected
    results: list[list[tuple[str, str]]] = []

    def work() -> None:
        for _ in range(4):
            results.append(v.validate_json(text))

    _assert_ran_freely(*_run_eight(work))
    assert results == [expected] * 32


def test_eight_threads_validate_many_while_others_run() -> None:
    # Long strings against a pattern: converting one is a copy, checking it
    # is a regex scan, so most of the time is spent with the GIL released.
    v = SchemaValidator({"type": "string", "pattern": "^(ab|cd)*$"})
    good, bad = "ab" * 100_000, "ab" * 99_999 + "x"
    batch = [good, bad] * 20
    expected = v.validate_many(batch)
    assert expected[0] == [] and [p for p, _ in expected[1]] == [""]
    results: list[list[list[tuple[str, str]]]] = []

    def work() -> None:
        for _ in range(4):
            results.append(v.validate_many(batch))

    _assert_ran_freely(*_run_eight(work))
    assert len(results) == 32
    assert all(r == expected for r in results)


def test_the_validator_is_exported_with_its_stub_name() -> None:
    assert "SchemaValidator" in dir(_native)
    assert SchemaValidator.__module__ == "alkdev_storage._native"
