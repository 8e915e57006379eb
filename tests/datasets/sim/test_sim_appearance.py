"""The simulator's appearance: a caller may give the model that draws the descriptors."""

from __future__ import annotations

import numpy as np

from storesense.config import example_store_path, load_store_config
from storesense.datasets.sim.appearance import AppearanceModel
from storesense.edge.camera.appearance import appearance_distance
from storesense.datasets.sim.simulator import simulate


def _same_shopper_distances(scenario) -> list[float]:
    """Distances between consecutive unhidden descriptors of each (camera, track) of a scenario."""
    last, out = {}, []
    for m in scenario.messages:
        if m.type != "person_observation" or m.appearance is None or m.appearance.quality < 0.99:
            continue
        key = (m.camera, m.track_id)
        if key in last:
            out.append(appearance_distance(last[key], m.appearance))
        last[key] = m.appearance
    return out


def test_a_given_appearance_model_draws_the_descriptors_and_nothing_else_changes():
    config = load_store_config(example_store_path())
    real = simulate(config, "quiet", shoppers=2, seed=3)
    easy = simulate(config, "quiet", shoppers=2, seed=3,
                    appearance=AppearanceModel(lookalike_share=0.0, light_shift=0.0, concentration=5000.0))
    strip = [m.model_copy(update={"appearance": None}) if m.type == "person_observation" else m for m in real.messages]
    strip_easy = [m.model_copy(update={"appearance": None}) if m.type == "person_observation" else m
                  for m in easy.messages]
    assert strip == strip_easy  # only the descriptors differ
    d_real, d_easy = np.median(_same_shopper_distances(real)), np.median(_same_shopper_distances(easy))
    # the calibrated model's noise keeps a same-person median near 0.15-0.2 (docs/fusion.md); the easy one ~0
    assert d_real > 0.1 and d_easy < 0.05, (d_real, d_easy)
