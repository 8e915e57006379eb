"""``storesense calibrate ble`` input: the Kolakowski dataset's calibration samples, a recording or a CSV.

A folder is read as the Kolakowski BLE dataset (its robot's calibration samples,
tag at :data:`~storesense.datasets.loaders.kolakowski.TAG_HEIGHT_M`); a file as a
recording of reference tags (JSONL, or a walk-test CSV ``ts,node,tag,rssi``), refitted by
:func:`storesense.calibration.ble.recalibrate_from_recording`. The fitting itself
lives in :mod:`storesense.calibration.ble`, which reads no dataset.
"""

from __future__ import annotations

from pathlib import Path

from ...calibration.ble import PathLossFit, fit_nodes, recalibrate_from_recording, write_fits
from ...errors import StoresenseError
from .kolakowski import TAG_HEIGHT_M, KolakowskiDataset
from .walk_test import is_sightings_csv, read_sightings_csv


def fit_kolakowski(folder: str | Path):
    """Fit the Kolakowski anchors from the robot's calibration samples.

    Returns the anchors, the fits, the samples per node (3-D distances and RSSI,
    for :func:`~storesense.calibration.ble.plot_fits`) and a line to print.
    """
    ds = KolakowskiDataset(folder)
    rmap = ds.radio_map()
    anchors = ds.anchors
    fits = fit_nodes(anchors, rmap.positions, rmap.rssi, rmap.nodes, tag_height=TAG_HEIGHT_M)
    samples = {n: (anchors[n].distance(rmap.positions, TAG_HEIGHT_M), rmap.rssi[:, j])
               for j, n in enumerate(rmap.nodes)}
    line = f"fitted from {len(rmap)} calibration samples of {folder} (tag at {TAG_HEIGHT_M} m)"
    return anchors, fits, samples, line


def run_calibrate_ble(data: str | Path, *, references: str | Path | None = None, config_path: str | Path | None = None,
                      output: str | Path | None = None, plot: str | Path | None = None,
                      peers: str | Path | None = None) -> tuple[list[PathLossFit], list[str]]:
    """``storesense calibrate ble``: fit from a Kolakowski folder or a reference-tag recording.

    Returns the fits and lines to print (files written). Raises StoresenseError on bad input.
    """
    data = Path(data)
    if not data.exists():
        raise StoresenseError(f"{data}: no such file or folder")
    if data.is_dir():
        anchors, fits, samples, line = fit_kolakowski(data)
    elif is_sightings_csv(data):
        anchors, fits, samples, line = recalibrate_from_recording(data, references, config_path=config_path,
                                                                  messages=read_sightings_csv(data), peers=peers)
    else:
        anchors, fits, samples, line = recalibrate_from_recording(data, references, config_path=config_path,
                                                                  peers=peers)
    return list(fits.values()), [line] + write_fits(anchors, fits, samples, output=output, plot=plot)
