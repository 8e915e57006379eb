"""The camera node's appearance descriptor: colours of torso and thighs, robust to light, never pixels."""

import json
import time

import cv2
import numpy as np
import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import PersonObservation, decode, encode
from storesense.edge.camera.appearance import (
    BINS, appearance_distance, body_regions, describe_person, histograms,
)
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.detector import Detector
from storesense.edge.camera.node import CameraNode
from storesense.edge.camera.sources import Frame
from storesense.errors import MessageError

BOX = (200, 100, 300, 400)  # x0, y0, x1, y1


def _person(shirt_bgr, trousers_bgr, light: float = 1.0, seed: int = 0) -> np.ndarray:
    """A grey frame with a person: shirt from 20 to 50 % of the box height, trousers below, texture noise."""
    rng = np.random.default_rng(seed)
    img = np.full((480, 640, 3), 128.0)
    x0, y0, x1, y1 = BOX
    h = y1 - y0
    img[y0:y0 + int(0.5 * h), x0:x1] = shirt_bgr
    img[y0 + int(0.5 * h):y1, x0:x1] = trousers_bgr
    img[y0:y0 + int(0.15 * h), x0 + 30:x1 - 30] = (120, 160, 220)  # a face
    img += rng.normal(0, 8, img.shape)
    return np.clip(img * light, 0, 255).astype(np.uint8)


RED, BLUE, GREEN, BLACK = (40, 40, 200), (180, 60, 30), (50, 170, 40), (25, 25, 25)


def test_colours_land_in_their_hue_bins():
    app = describe_person(_person(RED, BLUE), BOX)
    h = histograms(app)
    assert len(app.bins) == BINS == 24 and app.quality == 1.0
    assert h[0].argmax() in (0, 7)  # red torso: hue around 0
    assert h[1].argmax() in (4, 5)  # blue thighs: OpenCV hue ~110
    assert h[0].sum() == pytest.approx(1.0) and h[1].sum() == pytest.approx(1.0)


def test_same_clothes_under_other_light_are_closer_than_other_clothes():
    a = describe_person(_person(RED, BLUE, seed=1), BOX)
    dim = describe_person(_person(RED, BLUE, light=0.6, seed=2), BOX)
    other = describe_person(_person(GREEN, BLACK, seed=3), BOX)
    near, far = appearance_distance(a, dim), appearance_distance(a, other)
    assert near < 0.25 and far > 0.6, (near, far)


def test_regions_follow_the_keypoints_and_fall_back_to_the_box():
    kp = np.zeros((17, 3))
    kp[:, 2] = 0.9
    kp[5], kp[6] = (230, 140, 0.9), (270, 140, 0.9)  # shoulders
    kp[11], kp[12] = (235, 250, 0.9), (265, 250, 0.9)  # hips
    kp[13], kp[14] = (235, 320, 0.9), (265, 320, 0.9)  # knees
    torso, legs = body_regions(BOX, kp)
    assert 140 < torso[1] < torso[3] < 250 and 250 <= legs[1] < legs[3] <= 320
    kp[:, 2] = 0.1  # unsure keypoints: fixed shares of the box
    assert body_regions(BOX, kp) == body_regions(BOX)
    assert describe_person(np.zeros((480, 640), np.uint8), BOX) is None  # not a colour frame
    assert describe_person(_person(RED, BLUE), (700, 500, 720, 520)) is None  # outside the image


def _observation(**appearance):
    return {"v": 2, "type": "person_observation", "event_id": "e1", "source": "cam1", "seq": 1, "ts": 1.0,
            "camera": "cam1", "frame": 0, "track_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9,
            "appearance": appearance}


def test_the_descriptor_on_the_wire_is_24_small_integers_never_image_bytes():
    app = describe_person(_person(RED, BLUE), BOX)
    msg = PersonObservation(event_id="e1", source="cam1", seq=1, ts=1.0, camera="cam1", frame=0, track_id=1,
                            bbox=(0, 0, 10, 10), score=0.9, appearance=app)
    wire = json.loads(encode(msg))
    assert wire["v"] == 2 and set(wire["appearance"]) == {"bins", "quality"}
    assert len(wire["appearance"]["bins"]) == 24 and all(type(b) is int and 0 <= b <= 255
                                                         for b in wire["appearance"]["bins"])
    assert len(json.dumps(wire["appearance"])) < 150
    assert decode(encode(msg)) == msg
    for bad in ({"bins": [1] * 25, "quality": 1.0},  # longer: could smuggle pixels
                {"bins": ["aGVsbG8="] + [0] * 23, "quality": 1.0},  # base64 text
                {"bins": [1.5] + [0] * 23, "quality": 1.0},
                {"bins": [256] + [0] * 23, "quality": 1.0}):
        with pytest.raises(MessageError, match="appearance"):
            decode(json.dumps(_observation(**bad)))
    v1 = _observation(bins=[0] * 24, quality=1.0)
    v1["v"] = 1
    with pytest.raises(MessageError, match="schema version 2"):
        decode(json.dumps(v1))
    del v1["appearance"]
    assert decode(json.dumps(v1)).appearance is None  # v1 messages still read


class _OnePerson(Detector):
    name = "one-person"
    input_size = (0, 0)

    def detect(self, frame):
        return Detections(np.array([BOX], float), [0.9], None)


class _Ids:
    def update(self, dets, frame=None):
        return Detections(dets.xyxy, dets.scores, dets.keypoints, np.arange(1, len(dets) + 1))

    def reset(self):
        pass


def test_camera_node_publishes_the_descriptor_and_its_cost_is_small():
    store = load_store_config(example_store_path())
    cam = store.cameras[0].id
    node = CameraNode(store, cam, detector=_OnePerson(), tracker=_Ids(), run_id="t")
    image = _person(RED, BLUE)
    obs = [m for m in node.process(Frame(0, 0.0, image)) if isinstance(m, PersonObservation)]
    assert obs[0].appearance is not None and obs[0].appearance == describe_person(image, BOX)
    started = time.perf_counter()
    for _ in range(200):
        describe_person(image, BOX)
    per_person_ms = (time.perf_counter() - started) / 200 * 1000
    assert per_person_ms < 2.0, per_person_ms  # against tens of ms for the pose model
