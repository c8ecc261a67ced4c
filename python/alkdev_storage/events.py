"""Change events: every mutation publishes one stream event in the same
transaction as the write (SPEC §6; the envelope is in docs/events.md).

Topics are ``<entity>:<action>`` (``accounts:created``,
``organizations:deleted``, ...); membership changes all go to
``memberships:changed`` with the change in ``action``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alkdev_storage._native import Transaction

if TYPE_CHECKING:
    from alkdev_storage._database import Database

#: Envelope format version, in every event as ``"v"``.
ENVELOPE_VERSION = 1


def envelope(
    topic: str,
    entity_id: str,
    *,
    action: str,
    actor: str | None,
    data: Mapping[str, Any] | None = None,
    org_id: str | None = None,
    graph_id: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The event payload (see docs/events.md)."""
    event: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "id": str(uuid.uuid4()),
        "topic": topic,
        "action": action,
        "entity_id": entity_id,
        "actor": actor,
        "ts": time.time(),
    }
    if org_id is not None:
        event["org_id"] = org_id
    if graph_id is not None:
        event["graph_id"] = graph_id
    if key is not None:
        event["key"] = key
    if data is not None:
        event["data"] = dict(data)
    return event


def publish(
    db: Database,
    tx: Transaction,
    topic: str,
    entity_id: str,
    *,
    action: str,
    actor: str | None,
    data: Mapping[str, Any] | None = None,
    org_id: str | None = None,
    graph_id: str | None = None,
    key: str | None = None,
) -> int:
    """Publish one change event inside `tx`; its stream offset."""
    payload = envelope(
        topic,
        entity_id,
        action=action,
        actor=actor,
        data=data,
        org_id=org_id,
        graph_id=graph_id,
        key=key,
    )
    return db._publish(topic, payload, None, tx=tx)
