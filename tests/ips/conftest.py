"""Fixtures of the positioning tests: a simulated walk test with known truth."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def store_walk(tmp_path_factory):
    """``(config, folder, scenario, truth)``: two shoppers in the example shop (seed 3), known truth.

    The simulated shop's phones as a store engineer would hand them over:
    ``sightings.csv`` (``ts,node,tag,rssi``), the same as a JSONL recording
    (``sightings.jsonl``), and ``truth.csv`` (``ts,tag,x,y`` every 0.25 s);
    ``truth`` is tag -> array (n, 3) of ts, x, y as the CSV holds them (mm).
    """
    from storesense.config import example_store_path, load_store_config
    from storesense.contracts import BleSighting
    from storesense.datasets.loaders.walk_test import write_sightings_csv
    from storesense.datasets.sim.synthetic import generate_scenario
    from storesense.transport.recording import record

    cfg = load_store_config(example_store_path())
    sc = generate_scenario(cfg, shoppers=2, seed=3)
    folder = tmp_path_factory.mktemp("ble-walk")
    sightings = [m for m in sc.messages if isinstance(m, BleSighting)]
    record(sightings, folder / "sightings.jsonl", cfg.store.id)
    assert write_sightings_csv(sc.messages, folder / "sightings.csv") == len(sightings)
    truth = {}
    with open(folder / "truth.csv", "w") as fh:
        fh.write("ts,tag,x,y\n")
        for s in sc.shoppers:
            ts = np.arange(s.enter_ts, s.exit_ts, 0.25)
            truth[s.tag] = np.round([(t, *s.position(float(t))) for t in ts], 3)
            for t, x, y in truth[s.tag]:
                fh.write(f"{t:.3f},{s.tag},{x:.3f},{y:.3f}\n")
    return cfg, folder, sc, truth
