"""BLE fixes for the fusion node, from :mod:`storesense.ips`.

:class:`IpsBle` feeds BLE sightings to an ``ips`` locator (one tracker per
tag, path-loss models of the store's BLE nodes, kept on walkable floor) and
hands the fusion node each new fix of a tag as a :class:`~.identity.Fix`.
"""

from __future__ import annotations

from ..config import StoreConfig
from ..contracts import BleSighting
from .identity import Fix


class IpsBle:
    """Adapter from an ``ips`` BLE locator to the fusion node's fixes."""

    def __init__(self, config: StoreConfig, method: str = "kalman"):
        from ..ips.setup import setup_from_config

        setup = setup_from_config(config)
        # a fix kept on walkable floor may walk around a shelf (A* on the floor grid's graph): the graph and every
        # cell's neighbours are built now, at start-up, not cell by cell during the first minutes of fixes
        setup.walkable.grid.graph.prepare()
        self.locator = setup.locator(method)

    def update(self, sighting: BleSighting) -> list[Fix]:
        """Take one sighting; return the fixes it completed (usually none or one)."""
        return [Fix(f.ts, f.x, f.y, f.cov_tuple()) for f in self.locator.handle(sighting)]
