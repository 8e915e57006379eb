"""The store config: the example store loads, and bad files give one clear line."""

import subprocess
import sys

import numpy as np
import pytest

from storesense.config import example_store_path, load_store_config, parse_store_config
from storesense.errors import ConfigError
import yaml


@pytest.fixture
def example_dict():
    return yaml.safe_load(example_store_path().read_text())


def test_example_store_loads_and_cross_references_hold():
    cfg = load_store_config(example_store_path())
    assert cfg.store.id == "demo-shop"
    assert len(cfg.cameras) >= 3 and len(cfg.ble_nodes) >= 3 and cfg.weight_sensors
    assert cfg.zones_of("entry") and cfg.zones_of("exit")
    # every camera is calibrated: its homography maps its own projection back to the floor
    for cam in cfg.cameras:
        uv = cam.floor_to_image(np.array([[5.0, 4.0, 0.0]]))[0]
        H = cam.image_to_floor_homography()
        p = H @ np.array([uv[0], uv[1], 1.0])
        assert np.allclose(p[:2] / p[2], [5.0, 4.0], atol=1e-6)


def test_walkable_excludes_shelves_and_outside():
    cfg = load_store_config(example_store_path())
    assert cfg.is_walkable(4.5, 4.0)      # aisle
    assert not cfg.is_walkable(3.0, 4.0)  # inside shelf A
    assert not cfg.is_walkable(13.0, 4.0)  # outside the walls


def test_wrong_type_names_file_field_and_expectation(tmp_path, example_dict):
    example_dict["cameras"][1]["intrinsics"]["fx"] = "wide"
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(example_dict))
    with pytest.raises(ConfigError) as err:
        load_store_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "cameras[1].intrinsics.fx" in msg
    assert "valid number" in msg and "'wide'" in msg


def test_unknown_field_is_rejected(example_dict):
    example_dict["shelves"][0]["colour"] = "red"
    with pytest.raises(ConfigError, match=r"shelves\[0\]\.colour: Extra inputs are not permitted"):
        parse_store_config(example_dict, origin="x.yaml")


def test_dangling_reference_is_named(example_dict):
    example_dict["shelves"][0]["plates"][1]["sku"] = "NOPE"
    with pytest.raises(ConfigError, match=r"shelves\[0\]\.plates\[1\]\.sku: unknown product 'NOPE'"):
        parse_store_config(example_dict, origin="x.yaml")


def test_degenerate_polygon_is_rejected(example_dict):
    example_dict["zones"][1]["polygon"] = [[0, 0], [1, 1], [2, 2]]
    with pytest.raises(ConfigError, match=r"zones\[1\]\.polygon: .*zero area"):
        parse_store_config(example_dict)


def test_gates_must_sit_in_an_entry_zone_and_be_unique(example_dict):
    entry = next(i for i, z in enumerate(example_dict["zones"]) if z["kind"] == "entry")
    gates = example_dict["zones"][entry]["gates"]
    gates[0]["position"] = [6.0, 4.0]
    with pytest.raises(ConfigError, match=rf"zones\[{entry}\]: .*gate gate-1 at \[6.0, 4.0\] is not in the zone"):
        parse_store_config(example_dict)
    gates[0]["position"] = [0.9, 0.7]
    gates[1]["id"] = gates[0]["id"]
    with pytest.raises(ConfigError, match=r"gates\[1\]: duplicate id 'gate-1'"):
        parse_store_config(example_dict)
    gates[1]["id"] = "gate-2"
    exit_ = next(i for i, z in enumerate(example_dict["zones"]) if z["kind"] == "exit")
    example_dict["zones"][exit_]["gates"] = [{"id": "out", "position": [10.0, 0.8]}]
    with pytest.raises(ConfigError, match=r"gates belong to entry zones"):
        parse_store_config(example_dict)


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("store:\n  id: x\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: invalid YAML: line \d+ column \d+"):
        load_store_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_store_config(tmp_path / "absent.yaml")


def test_cli_reports_bad_config_in_one_line_without_traceback(tmp_path, example_dict):
    example_dict["ble_nodes"][0]["path_loss_exponent"] = 42
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(example_dict))
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "ble_nodes[0].path_loss_exponent" in proc.stderr
    assert "less than or equal to 6" in proc.stderr


def test_cli_accepts_the_example_store():
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "config", "check", str(example_store_path())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_one_sku_on_two_plates_and_several_skus_on_one_plate_load(example_dict):
    shelf = example_dict["shelves"][0]
    shelf["plates"].append({"id": "A4", "sku": "MILK-1L", "level": 0, "position_m": 2.5, "width_m": 0.1})
    shelf["plates"][1]["also"] = ["BUTTER-250", "TEA-20"]
    shelf["gondola"] = "G1"
    cfg = parse_store_config(example_dict, origin="x.yaml")
    milk = [p.id for s in cfg.shelves for p in s.plates if p.sku == "MILK-1L"]
    assert milk == ["A1", "A4"]
    assert cfg.plate("A", "A2").skus == ["YOG-500", "BUTTER-250", "TEA-20"]
    assert cfg.shelf("A").plate_span(cfg.plate("A", "A4")) == (2.5, 0.1)
    centre, width = cfg.shelf("A").plate_span(cfg.plate("A", "A1"))  # two plates on level 0 share the 3.5 m front
    assert abs(width - 1.75) < 1e-9 and abs(centre - 0.875) < 1e-9


def test_duplicate_plate_id_is_one_line_naming_the_field(example_dict):
    example_dict["shelves"][1]["plates"][0]["id"] = "A1"  # another shelf, another product, the same id
    with pytest.raises(ConfigError) as err:
        parse_store_config(example_dict, origin="x.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert "x.yaml" in msg and "shelves[1].plates[0].id: duplicate plate id 'A1' (also shelves[0].plates[0])" in msg


def test_duplicate_sku_and_unknown_shared_sku_are_named(example_dict):
    example_dict["products"].append(dict(example_dict["products"][0]))
    with pytest.raises(ConfigError, match=r"products\[9\]\.sku: duplicate sku 'MILK-1L'"):
        parse_store_config(example_dict, origin="x.yaml")
    example_dict["products"].pop()
    example_dict["shelves"][0]["plates"][0]["also"] = ["NOPE"]
    with pytest.raises(ConfigError, match=r"shelves\[0\]\.plates\[0\]\.also\[0\]: unknown product 'NOPE'"):
        parse_store_config(example_dict, origin="x.yaml")


def test_a_shelf_front_normal_points_to_where_shoppers_stand():
    """Shelf A's front runs along x = 3.4 with its access point at x = 3.9: the normal is +x, unit length;
    with the access point behind it (x = 2.1) the front is the x = 2.6 side and the normal -x."""
    import numpy as np

    from storesense.config import example_store_path, load_store_config

    shelf = load_store_config(example_store_path()).shelf("A")
    assert np.allclose(shelf.front_normal(), [1.0, 0.0])
    flipped = shelf.model_copy(update={"access_point": (2.1, 4.25)})
    assert np.allclose(flipped.front_normal(), [-1.0, 0.0])
