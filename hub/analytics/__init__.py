"""Store analytics at the hub: footfall, dwell, floor heatmap, zone conversion, shelf interest.

Anonymous by construction: :mod:`.rollup` folds each stored message into hourly rollup tables
that never hold a session id (and survive the retention purge of positions); :mod:`.anonymity`
suppresses or merges every group of fewer than k visitors; :mod:`.report` reads a time range
from the rollup (what the CLI export, the JSON endpoints, the page and the hourly MQTT message
share); :mod:`.export` writes CSV, Parquet and PNG charts; :mod:`.publish` sends the hourly
retained message. docs/analytics.md documents the tables.
"""

from __future__ import annotations

from .anonymity import Suppression, merge_runs, suppress
from .report import COLUMNS, AnalyticsReport, build_report, day_range
from .rollup import Rollup, create_schema

__all__ = ["COLUMNS", "AnalyticsReport", "Rollup", "Suppression", "build_report", "create_schema", "day_range",
           "merge_runs", "suppress"]
