"""Declarative graph-type specs (SPEC §5): frozen dataclasses, or the same
as a JSON/YAML document.

>>> from alkdev_storage.metagraph import GraphTypeSpec
>>> spec = GraphTypeSpec.from_document('''
... {"name": "tasks", "scope": "tenant", "version": 1,
...  "config": {"type": "directed", "multi": false, "allowSelfLoops": false},
...  "nodeTypes": {"task": {"schema": {"type": "object", "required": ["title"]}}},
...  "edgeTypes": {"depends_on": {"schema": {}, "allowedSourceTypes": ["task"],
...                               "allowedTargetTypes": ["task"]}}}
... ''')
>>> spec.node_types["task"].schema["required"]
['title']
>>> GraphTypeSpec.from_document(spec.to_document()) == spec
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from alkdev_storage import _checks as check
from alkdev_storage import _documents as documents
from alkdev_storage._checks import shown
from alkdev_storage.errors import InputTypeError, InvalidInputError

SCOPES = ("system", "tenant", "user")
GRAPH_KINDS = ("directed", "undirected", "mixed")


def _frozen_json(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts stay dicts: specs compare by
    value, and schemas are handed to the validator as they are)."""
    return json.loads(check.dumps(value, "a schema"))


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{kind} name must be a non-empty str")
    if len(value) > 100 or value != value.strip():
        raise InvalidInputError(
            f"{kind} name {shown(value)} must be at most 100 characters, no padding"
        )
    return value


@dataclass(frozen=True, slots=True)
class GraphConfig:
    """``type``: directed, undirected or mixed; ``multi``: more than one edge
    per pair of nodes; ``allow_self_loops``: edges from a node to itself."""

    type: str = "directed"
    multi: bool = False
    allow_self_loops: bool = False

    def __post_init__(self) -> None:
        if self.type not in GRAPH_KINDS:
            raise InvalidInputError(f"graph type must be one of {', '.join(GRAPH_KINDS)}")
        if not isinstance(self.multi, bool) or not isinstance(self.allow_self_loops, bool):
            raise InputTypeError("multi and allow_self_loops must be bools")

    def to_document(self) -> dict[str, Any]:
        return {"type": self.type, "multi": self.multi, "allowSelfLoops": self.allow_self_loops}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> GraphConfig:
        return cls(
            type=doc.get("type", "directed"),
            multi=doc.get("multi", False),
            allow_self_loops=doc.get("allowSelfLoops", False),
        )


@dataclass(frozen=True, slots=True)
class NodeTypeSpec:
    """A node type: the JSON Schema its attributes must satisfy."""

    schema: Mapping[str, Any] | bool = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _frozen_json(self.schema))

    def to_document(self) -> dict[str, Any]:
        return {"schema": self.schema, "description": self.description}


@dataclass(frozen=True, slots=True)
class EdgeTypeSpec:
    """An edge type: its attributes' JSON Schema and the node types allowed
    at each end (empty: any)."""

    schema: Mapping[str, Any] | bool = field(default_factory=dict)
    allowed_source_types: Sequence[str] = ()
    allowed_target_types: Sequence[str] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _frozen_json(self.schema))
        for attr in ("allowed_source_types", "allowed_target_types"):
            value = getattr(self, attr)
            if isinstance(value, str):
                raise InputTypeError(f"{attr} must be a list of node-type names, not a str")
            object.__setattr__(self, attr, tuple(_name("node type", n) for n in value))

    def to_document(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "allowedSourceTypes": list(self.allowed_source_types),
            "allowedTargetTypes": list(self.allowed_target_types),
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class GraphTypeSpec:
    """A graph type: its config and its node and edge types."""

    name: str
    scope: str = "tenant"
    version: int = 1
    config: GraphConfig = field(default_factory=GraphConfig)
    node_types: Mapping[str, NodeTypeSpec] = field(default_factory=dict)
    edge_types: Mapping[str, EdgeTypeSpec] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _name("graph type", self.name)
        if self.scope not in SCOPES:
            raise InvalidInputError(f"scope must be one of {', '.join(SCOPES)}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidInputError("version must be an int of at least 1")
        nodes = {_name("node type", k): v for k, v in self.node_types.items()}
        edges = {_name("edge type", k): v for k, v in self.edge_types.items()}
        for edge_name, edge in edges.items():
            for end in (*edge.allowed_source_types, *edge.allowed_target_types):
                if end not in nodes:
                    raise InvalidInputError(
                        f"edge type {shown(edge_name)} allows unknown node type {shown(end)}"
                    )
        object.__setattr__(self, "node_types", MappingProxyType(dict(sorted(nodes.items()))))
        object.__setattr__(self, "edge_types", MappingProxyType(dict(sorted(edges.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GraphTypeSpec):
            return NotImplemented
        return self.to_document() == other.to_document()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def to_document(self) -> dict[str, Any]:
        """The spec as a JSON-ready document (camelCase keys, as accepted by
        `from_document`)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "version": self.version,
            "description": self.description,
            "config": self.config.to_document(),
            "nodeTypes": {k: v.to_document() for k, v in self.node_types.items()},
            "edgeTypes": {k: v.to_document() for k, v in self.edge_types.items()},
        }

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical document, version excluded: equal
        fingerprints mean the same definition."""
        doc = self.to_document()
        doc.pop("version")
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | str) -> GraphTypeSpec:
        """Build a spec from a mapping, JSON text, or YAML text (YAML needs
        the ``yaml`` extra; a malformed text raises `DocumentError`)."""
        if isinstance(doc, str):
            doc = documents.load(doc, source="graph-type document")
        if not isinstance(doc, Mapping):
            raise InputTypeError("a graph-type document must be a mapping")
        unknown = set(doc) - {
            "name",
            "scope",
            "version",
            "description",
            "config",
            "nodeTypes",
            "edgeTypes",
        }
        if unknown:
            listed = ", ".join(sorted(map(shown, unknown)))
            raise InvalidInputError(f"unknown graph-type field(s): {listed}")
        return cls(
            name=doc.get("name", ""),
            scope=doc.get("scope", "tenant"),
            version=doc.get("version", 1),
            description=doc.get("description", ""),
            config=GraphConfig.from_document(doc.get("config", {})),
            node_types={
                k: NodeTypeSpec(schema=v.get("schema", {}), description=v.get("description", ""))
                for k, v in doc.get("nodeTypes", {}).items()
            },
            edge_types={
                k: EdgeTypeSpec(
                    schema=v.get("schema", {}),
                    allowed_source_types=v.get("allowedSourceTypes", ()),
                    allowed_target_types=v.get("allowedTargetTypes", ()),
                    description=v.get("description", ""),
                )
                for k, v in doc.get("edgeTypes", {}).items()
            },
        )
