"""System graph types: canonical copies in system.db, registered by the
platform (``store.graph_types``), mirrored read-only into every tenant file
when it is opened (version-checked) and by ``store.migrate_all()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alkdev_storage import events
from alkdev_storage._checks import shown
from alkdev_storage.errors import InvalidInputError, UnknownTypeError
from alkdev_storage.metagraph import _validation
from alkdev_storage.metagraph.specs import GraphTypeSpec
from alkdev_storage.metagraph.types import (
    GraphTypeInfo,
    compile_all,
    list_types,
    needs_write,
    read_type,
    write_type,
)

if TYPE_CHECKING:
    from alkdev_storage.storage import Storage


class SystemGraphTypes:
    """``store.graph_types``: register and read system-scoped graph types."""

    def __init__(self, store: Storage) -> None:
        self._store = store

    def register(self, spec: GraphTypeSpec | Mapping[str, Any] | str) -> GraphTypeInfo:
        """Register a system type (``scope="system"``). Idempotent for the
        same spec; a change needs a higher version. Tenant files pick it up
        the next time they are opened (or on ``store.migrate_all()``)."""
        if not isinstance(spec, GraphTypeSpec):
            spec = GraphTypeSpec.from_document(spec)
        if spec.scope != "system":
            raise InvalidInputError(
                f"store.graph_types registers system types; {shown(spec.name)} has scope "
                f"{shown(spec.scope)} (register tenant and user types in a tenant file)"
            )
        compile_all(spec, self._store.limits)
        db = self._store.system
        with db.transaction() as tx:
            existing = read_type(tx, name=spec.name)
            if needs_write(existing, spec):
                gid = write_type(tx, spec, owner_id=None)
                events.publish(
                    db,
                    tx,
                    "graph_types:created" if existing is None else "graph_types:updated",
                    gid,
                    action="created" if existing is None else "updated",
                    actor=None,
                    data=spec.to_document(),
                )
            found = read_type(tx, name=spec.name)
        self._store._types_changed()
        _validation.forget(str(db.path))
        assert found is not None
        return found

    def get(self, name: str) -> GraphTypeInfo:
        found = read_type(self._store.system, name=name)
        if found is None:
            raise UnknownTypeError(f"no system graph type {shown(name)}")
        return found

    def list(self) -> list[GraphTypeInfo]:
        return list_types(self._store.system)
