"""The metagraph: typed graphs in each tenant file (SPEC §4, §5)."""

from __future__ import annotations

from alkdev_storage.metagraph.specs import (
    EdgeTypeSpec,
    GraphConfig,
    GraphTypeSpec,
    NodeTypeSpec,
)

__all__ = ["EdgeTypeSpec", "GraphConfig", "GraphTypeSpec", "NodeTypeSpec"]
