"""The message contracts: every message that crosses a process boundary.

This module is the single owner of what goes on the wire between camera, BLE and
shelf nodes, the fusion node and the store hub. Every message is versioned JSON
with a common envelope:

``v``         schema version (:data:`SCHEMA_VERSION`)
``type``      the message type, e.g. ``"person_observation"``
``event_id``  unique id; consumers drop a message whose id they have seen
``source``    the node that produced it (``cam1``, ``ble-door``, ``fusion``)
``seq``       per-source sequence number, starting at 1
``ts``        timestamp in seconds (Unix time, or the recording's clock in replay)

Units are metres, seconds, grams and dBm. Use :class:`Stamper` to create
messages (it fills in the envelope), :func:`encode` to turn one into bytes and
:class:`Decoder` to read untrusted bytes: a malformed or unknown message is
counted, logged with the reason and skipped, never raised into a node's loop.

Topics (MQTT and ZeroMQ share them) are defined here too, by :func:`topic_for`,
so that one table documents where each message travels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import MessageError, describe_validation_error

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Schema versions each message type may carry; a type gains a version when it gains a field.
#: ``person_observation`` v2 adds the optional ``appearance`` (a v2 message without it is
#: the same as v1; a node that reads only v1 rejects v2 with a clear "unsupported schema version");
#: ``cart_event`` v2 adds its change's optional ``alternatives`` likewise.
SCHEMA_VERSIONS: dict[str, tuple[int, ...]] = {"person_observation": (1, 2), "cart_event": (1, 2)}
#: length of a person's appearance descriptor (2 body regions × 12 colour bins)
APPEARANCE_BINS = 24

# Limits of strict decoding (see :func:`decode`): what storage holds and what a node can parse safely.
#: most bytes in one encoded message
MAX_MESSAGE_BYTES = 256 * 1024
#: deepest nesting of JSON objects and arrays in a message (the real messages need 4)
MAX_DEPTH = 8
#: largest integer magnitude anywhere in a message (a signed 64-bit integer, what SQL stores)
MAX_INT = 2**63 - 1
#: longest event id or source id
MAX_ID_CHARS = 128
#: what an event id or a node id may look like: letters, digits and ``_.:-`` (node ids as the config allows)
ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"

#: a decoder logs each kind of rejected message at most once per this many seconds
LOG_EVERY_S = 10.0

#: Namespace for deterministic event ids (uuid5 of source, run id and seq).
EVENT_NAMESPACE = uuid.UUID("6c1f3a52-8f0e-4a55-9f43-2a1de0c1a7b1")

def _covariance(value):
    """A 2×2 covariance must be symmetric with a positive diagonal and a non-negative determinant."""
    (xx, xy), (yx, yy) = value
    scale = max(abs(xx), abs(yy), 1e-12)
    if xx <= 0 or yy <= 0:
        raise ValueError(f"variances must be positive, got xx={xx}, yy={yy}")
    if abs(xy - yx) > 1e-6 * scale:
        raise ValueError(f"must be symmetric, got xy={xy} and yx={yx}")
    if xx * yy - xy * yx < -1e-9 * scale * scale:
        raise ValueError("is not positive semi-definite (xy² exceeds xx·yy)")
    return value


#: a 2×2 covariance in m², validated (see :func:`_covariance`)
Cov2 = Annotated[tuple[tuple[float, float], tuple[float, float]], AfterValidator(_covariance)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- parts


class Keypoint(_Model):
    """One body keypoint in image pixels (COCO order when 17 are given)."""

    x: float = Field(description="Column in pixels.")
    y: float = Field(description="Row in pixels.")
    score: float = Field(ge=0.0, le=1.0, description="Model confidence 0..1.")


class FloorPoint(_Model):
    """A point on the store floor in metres with its 2x2 covariance in m²."""

    x: float = Field(description="Floor x in metres.")
    y: float = Field(description="Floor y in metres.")
    cov: Cov2 = Field(description="Covariance [[xx, xy], [yx, yy]] in m².")


class CartChange(_Model):
    """One change to a cart: items added (picked) or removed (put back)."""

    sku: str = Field(description="Product SKU from the catalog.")
    quantity: int = Field(description="Signed change: +n picked, -n put back.")
    confidence: float = Field(ge=0.0, le=1.0, description="Confidence in this decision 0..1.")
    needs_review: bool = Field(default=False, description="True when a person should confirm it.")
    shelf: str | None = Field(default=None, description="Shelf the item was taken from or put on.")
    plate: str | None = Field(default=None, description="Plate (slot) within the shelf.")
    evidence: tuple[str, ...] = Field(default=(), description="event_ids of the messages behind it.")
    reason: str = Field(default="", description="Short human-readable explanation.")
    alternatives: tuple[str, ...] = Field(
        default=(), max_length=12,
        description="Other shoppers (session ids) who may have made this change instead, for the reviewer: "
                    "hands in the same shelf, or shoppers met while identity was in doubt (cart_event v2).")


class CartLine(_Model):
    """One line of a cart's current state."""

    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name from the catalog.")
    quantity: int = Field(ge=0, description="Items currently in the cart.")
    unit_price: float = Field(ge=0.0, description="Price per item from the catalog.")
    confidence: float = Field(ge=0.0, le=1.0, description="Lowest confidence of the changes behind it.")
    needs_review: bool = Field(default=False, description="True while any change behind it awaits review.")


class ReceiptLine(_Model):
    """One line of a receipt."""

    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name.")
    quantity: int = Field(gt=0, description="Items bought.")
    unit_price: float = Field(ge=0.0, description="Price per item.")
    amount: float = Field(ge=0.0, description="quantity × unit_price, rounded to cents.")


# --------------------------------------------------------------------------- messages


class Envelope(_Model):
    """Fields every message carries."""

    v: Literal[1] = Field(default=SCHEMA_VERSION, description="Schema version.")
    event_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
                          description="Unique id used to drop duplicates (letters, digits and ``_.:-``, "
                                      "at most 128 characters).")
    source: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
                        description="Node that produced the message (same characters as ``event_id``).")
    seq: int = Field(ge=1, le=MAX_INT, description="Per-source sequence number.")
    ts: float = Field(description="Timestamp in seconds.")


class Appearance(_Model):
    """A person's colour descriptor from the camera node: histograms, never pixels (schema v2).

    ``bins`` are two 12-bin colour histograms (torso, thighs: 8 hue bins and 4
    lightness bins each), each quantised to bytes summing to about 255 (all
    zeros: that region was not visible); see ``storesense.edge.camera.appearance``.
    """

    bins: tuple[Annotated[int, Field(ge=0, le=255, strict=True)], ...] = Field(
        min_length=APPEARANCE_BINS, max_length=APPEARANCE_BINS,
        description="24 histogram bins 0..255: torso hue ×8, torso lightness ×4, thigh hue ×8, thigh lightness ×4.")
    quality: float = Field(ge=0.0, le=1.0, description="How much of the body the histograms saw (0..1).")


class PersonObservation(Envelope):
    """A person seen by one camera in one frame (camera node -> fusion)."""

    type: Literal["person_observation"] = "person_observation"
    v: Literal[1, 2] = Field(default=SCHEMA_VERSION, description="Schema version (2 when ``appearance`` is set).")
    camera: str = Field(description="Camera id from the store config.")
    frame: int = Field(ge=0, description="Frame index in the camera's stream.")
    track_id: int = Field(ge=0, description="The camera's own track id for this person.")
    bbox: tuple[float, float, float, float] = Field(description="Box x, y, w, h in pixels.")
    score: float = Field(ge=0.0, le=1.0, description="Detection confidence.")
    keypoints: tuple[Keypoint, ...] | None = Field(default=None, description="Pose keypoints, if estimated.")
    floor: FloorPoint | None = Field(default=None, description="Foot point on the floor, if calibrated.")
    appearance: Appearance | None = Field(default=None, description="Colour descriptor of the person (v2), if computed.")

    @model_validator(mode="before")
    @classmethod
    def _version_of_appearance(cls, data):
        """A message with an appearance is v2 (filled in when not given; v1 with one is refused)."""
        if isinstance(data, dict) and data.get("appearance") is not None:
            if "v" not in data:
                data = {**data, "v": 2}
            elif data["v"] == 1:
                raise ValueError("appearance needs schema version 2")
        return data


class HandShelfInteraction(Envelope):
    """A hand entering or leaving a shelf face (camera node -> fusion)."""

    type: Literal["hand_shelf_interaction"] = "hand_shelf_interaction"
    camera: str = Field(description="Camera that saw it.")
    track_id: int = Field(ge=0, description="The camera's track id of the person whose hand it is.")
    shelf: str = Field(description="Shelf id from the store config.")
    face: str = Field(description="Face id of that shelf as configured for the camera.")
    phase: Literal["enter", "exit"] = Field(description="Hand entered or left the shelf face.")
    hand: Literal["left", "right"] = Field(description="Which wrist.")
    dwell_s: float = Field(ge=0.0, description="Seconds inside the face (0 on enter).")
    keypoint_score: float = Field(ge=0.0, le=1.0, description="Wrist keypoint confidence.")
    wrist: tuple[float, float] | None = Field(
        default=None, description="Image position (px) of the wrist in the face at this event, so fusion can tell "
                                  "which plate it reached (None: not reported).")


class BleSighting(Envelope):
    """A BLE advertisement heard by a receiver node (BLE node -> fusion)."""

    type: Literal["ble_sighting"] = "ble_sighting"
    node: str = Field(description="Receiver node id.")
    tag: str = Field(description="Tag or app id (iBeacon uuid-major-minor, Eddystone uid, or MAC).")
    rssi: float = Field(le=20.0, ge=-130.0, description="Received signal strength in dBm.")
    rssi_smoothed: float | None = Field(default=None, description="Smoothed RSSI in dBm, if filtered.")
    tx_power: float | None = Field(default=None, description="Advertised measured power at 1 m, dBm.")


class WeightChange(Envelope):
    """A settled weight change on one shelf plate (shelf node -> fusion)."""

    type: Literal["weight_change"] = "weight_change"
    sensor: str = Field(description="Weight sensor id.")
    shelf: str = Field(description="Shelf id.")
    plate: str = Field(description="Plate id within the shelf.")
    delta_g: float = Field(description="Change in grams: negative when items were removed.")
    total_g: float = Field(description="Settled plate load in grams after the change.")
    noise_g: float = Field(default=0.0, ge=0.0, description="Standard deviation of the reading in grams.")
    started_ts: float = Field(description="When the load started changing, seconds.")


class CheckIn(Envelope):
    """A shopper checking in at the entry: the app's tag, or a scanned code (entry gate -> fusion)."""

    type: Literal["check_in"] = "check_in"
    tag: str = Field(min_length=1, description="The shopper's app id / BLE tag, or the scanned code.")
    method: Literal["app", "code"] = Field(description="app: the phone app near the gate; code: a scanned code.")
    zone: str = Field(description="Entry zone id where the check-in happened.")
    gate: str | None = Field(default=None, description="Gate (scanner) id from the store config where it "
                                                       "happened, when the zone has gates: the tag goes to the "
                                                       "shopper standing there.")
    group_size: int = Field(default=1, ge=1, le=12, description="People checking in as one group (a family): "
                                                                "every member's picks go to one cart, the group's "
                                                                "receipt; the others are the next untagged "
                                                                "shoppers at the entry.")


class ShopperLocation(Envelope):
    """Where a shopper is on the floor (fusion -> hub)."""

    type: Literal["shopper_location"] = "shopper_location"
    shopper: str = Field(description="Pseudonymous session id.")
    track: str = Field(description="Fusion floor-track id.")
    x: float = Field(description="Floor x in metres.")
    y: float = Field(description="Floor y in metres.")
    cov: Cov2 = Field(description="Position covariance in m².")
    vx: float = Field(default=0.0, description="Velocity x in m/s.")
    vy: float = Field(default=0.0, description="Velocity y in m/s.")
    sources: tuple[str, ...] = Field(default=(), description="Cameras / BLE nodes behind the fix.")


class ZoneEvent(Envelope):
    """A shopper entering, dwelling in or leaving a zone (fusion -> hub)."""

    type: Literal["zone_event"] = "zone_event"
    shopper: str = Field(description="Pseudonymous session id.")
    zone: str = Field(description="Zone id from the store config.")
    phase: Literal["enter", "dwell", "exit"] = Field(description="What happened.")
    dwell_s: float = Field(default=0.0, ge=0.0, description="Seconds in the zone so far.")
    probability: float = Field(default=1.0, ge=0.0, le=1.0, description="Probability of being inside.")


class CartEvent(Envelope):
    """A change to a virtual cart, Frigate-style lifecycle (fusion -> hub)."""

    type: Literal["cart_event"] = "cart_event"
    v: Literal[1, 2] = Field(default=SCHEMA_VERSION, description="Schema version (2 when the change names "
                                                                  "``alternatives``).")
    shopper: str = Field(description="Pseudonymous session id owning the cart.")
    phase: Literal["new", "update", "end"] = Field(description="new: cart opened; update: a change; end: closed.")
    change: CartChange | None = Field(default=None, description="The change, for update events.")
    cart_version: int = Field(ge=0, description="Number of changes applied so far.")

    @model_validator(mode="before")
    @classmethod
    def _version_of_alternatives(cls, data):
        """A change naming alternatives is v2 (filled in when not given; v1 with them is refused)."""
        if isinstance(data, dict):
            change = data.get("change")
            alts = change.get("alternatives") if isinstance(change, dict) else getattr(change, "alternatives", None)
            if alts:
                if "v" not in data:
                    data = {**data, "v": 2}
                elif data["v"] == 1:
                    raise ValueError("a change with alternatives needs schema version 2")
        return data


class CartState(Envelope):
    """The current content of a cart; published retained (fusion -> hub)."""

    type: Literal["cart_state"] = "cart_state"
    shopper: str = Field(description="Pseudonymous session id.")
    status: Literal["open", "closed"] = Field(description="Open while shopping.")
    lines: tuple[CartLine, ...] = Field(default=(), description="Current lines.")
    total: float = Field(ge=0.0, description="Sum of line amounts.")
    cart_version: int = Field(ge=0, description="Number of changes applied.")


class Receipt(Envelope):
    """The receipt for a closed cart (fusion -> hub)."""

    type: Literal["receipt"] = "receipt"
    shopper: str = Field(description="Pseudonymous session id.")
    receipt_id: str = Field(description="Unique receipt id.")
    lines: tuple[ReceiptLine, ...] = Field(description="Lines bought.")
    total: float = Field(ge=0.0, description="Sum of amounts.")
    currency: str = Field(description="ISO 4217 currency code.")
    opened_ts: float = Field(description="When the session started.")
    closed_ts: float = Field(description="When the shopper left.")
    needs_review: bool = Field(default=False, description="True if any line still awaits review.")


class NodeStatus(Envelope):
    """Heartbeat and availability of a node (every node -> hub)."""

    type: Literal["node_status"] = "node_status"
    node: str = Field(description="Node id.")
    kind: Literal["camera", "ble", "shelf", "fusion", "hub", "generator"] = Field(description="Node kind.")
    state: Literal["online", "offline"] = Field(description="Availability.")
    uptime_s: float = Field(default=0.0, ge=0.0, description="Seconds since the node started.")
    counters: dict[str, int] = Field(default_factory=dict, description="Node counters (frames, drops, ...).")
    warnings: tuple[str, ...] = Field(
        default=(), description="One line per problem needing attention, naming the part (e.g. a sensor)."
    )


class NearbyShopper(_Model):
    """A shopper near a shelf when its load changed (evidence of an unattributed change)."""

    shopper: str = Field(description="Pseudonymous session id.")
    distance_m: float = Field(ge=0.0, description="Distance of the shopper's track from the shelf, metres.")


class ShelfEvent(Envelope):
    """Something about a plate's stock the store must look at (fusion -> hub).

    ``unattributed``: a settled load change no shopper's hand explains (no hand
    seen); it goes to the hub's review queue with its evidence: plate, weight,
    when the load changed and who stood near. ``misplaced``: the fusion's shelf
    inventory now believes ``count`` items of ``sku`` lie on a plate whose
    planogram does not hold that product (since ``since_ts``); count 0 says the
    plate is tidy again. The hub lists misplaced stock as a restock/tidy task.
    """

    type: Literal["shelf_event"] = "shelf_event"
    kind: Literal["unattributed", "misplaced"] = Field(description="What happened (see the class description).")
    shelf: str = Field(description="Shelf id from the store config.")
    plate: str = Field(description="Plate id within the shelf.")
    sku: str | None = Field(default=None, description="The product it is (best explanation of the weight).")
    quantity: int = Field(default=0, description="unattributed: signed items, +n taken off the plate, -n put "
                                                 "on it (0: no whole number of items fits).")
    count: int = Field(default=0, ge=0, description="misplaced: items of ``sku`` now on the plate against its "
                                                    "planogram.")
    delta_g: float = Field(default=0.0, description="unattributed: the load change in grams.")
    change_ts: float | None = Field(default=None, description="unattributed: when the load started changing.")
    since_ts: float | None = Field(default=None, description="misplaced: since when the items lie there.")
    nearby: tuple[NearbyShopper, ...] = Field(default=(), description="Shoppers within 3 m of the shelf then, "
                                                                      "nearest first.")
    evidence: tuple[str, ...] = Field(default=(), description="event_ids of the messages behind it.")
    reason: str = Field(default="", description="Short human-readable explanation.")


class Offer(Envelope):
    """An offer for a shopper's app, triggered by a zone rule (hub -> shopper app)."""

    type: Literal["offer"] = "offer"
    shopper: str = Field(description="Pseudonymous session id the offer is for.")
    offer: str = Field(description="Offer rule id from the store config (hub.offers).")
    zone: str = Field(description="Zone whose enter or dwell triggered it.")
    title: str = Field(description="Short headline shown in the app.")
    text: str = Field(description="Offer text shown in the app.")
    trigger: str = Field(description="event_id of the message that triggered the offer.")


class LightCommand(Envelope):
    """A guidance command for one light fixture along a wayfinding route (hub -> lighting)."""

    type: Literal["light_command"] = "light_command"
    fixture: str = Field(description="Light fixture id from the store config (hub.lights).")
    route: str = Field(description="Id of the wayfinding route the command belongs to.")
    shopper: str | None = Field(default=None, description="Session id of the shopper being guided, if known.")
    action: Literal["guide", "off"] = Field(description="guide: light up for the route; off: stop guiding.")
    step: int = Field(ge=0, description="Order of this fixture along the route, 0 = first passed.")
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$", description="Colour to show, #RRGGBB.")
    duration_s: float = Field(gt=0.0, description="Seconds to keep guiding before switching back.")


class StoreAnalytics(Envelope):
    """Anonymous store analytics, published retained once an hour (hub -> dashboards, building management).

    The aggregates of docs/analytics.md for the store's current day so far (``summary``, ``hourly``,
    ``zones``), with k-anonymity applied: groups of fewer than ``k`` visitors are suppressed or merged
    (``notes`` says what was). Never a session id.
    """

    type: Literal["store_analytics"] = "store_analytics"
    period_start: float = Field(description="Start of the period covered, Unix seconds (the day's start).")
    period_end: float = Field(description="End of the period covered, Unix seconds (when it was computed).")
    k: int = Field(ge=1, description="k-anonymity threshold applied.")
    summary: dict[str, float | int | str | bool | None] = Field(description="The summary row (docs/analytics.md).")
    hourly: tuple[dict[str, float | int | str | None], ...] = Field(default=(), description="Hourly rows.")
    zones: tuple[dict[str, float | int | str | None], ...] = Field(default=(), description="Zone rows.")
    notes: tuple[str, ...] = Field(default=(), description="What k-anonymity suppressed or merged, per table.")


#: every message class, in the order the docs list them
MESSAGE_CLASSES: tuple[type[Envelope], ...] = (
    PersonObservation,
    HandShelfInteraction,
    BleSighting,
    WeightChange,
    CheckIn,
    ShopperLocation,
    ZoneEvent,
    CartEvent,
    CartState,
    Receipt,
    NodeStatus,
    Offer,
    LightCommand,
    StoreAnalytics,
    ShelfEvent,
)

#: any message, discriminated by its ``type`` field (for pydantic models that embed one)
Message = Annotated[Union[MESSAGE_CLASSES], Field(discriminator="type")]  # type: ignore[valid-type]

MESSAGE_TYPES: dict[str, type[Envelope]] = {cls.model_fields["type"].default: cls for cls in MESSAGE_CLASSES}

# --------------------------------------------------------------------------- topics

#: type -> (topic template, MQTT QoS, retained). ``{store}`` and the message's
#: own fields fill the template. ZeroMQ uses the same strings as topic frames.
TOPICS: dict[str, tuple[str, int, bool]] = {
    "person_observation": ("storesense/{store}/edge/{source}/person", 0, False),
    "hand_shelf_interaction": ("storesense/{store}/edge/{source}/interaction", 1, False),
    "ble_sighting": ("storesense/{store}/edge/{source}/ble", 0, False),
    "weight_change": ("storesense/{store}/edge/{source}/weight", 1, False),
    "check_in": ("storesense/{store}/edge/{source}/checkin", 1, False),
    "shopper_location": ("storesense/{store}/shoppers/{shopper}/location", 0, False),
    "zone_event": ("storesense/{store}/zones/{zone}/events", 1, False),
    "cart_event": ("storesense/{store}/carts/{shopper}/events", 1, False),
    "cart_state": ("storesense/{store}/carts/{shopper}/state", 1, True),
    "receipt": ("storesense/{store}/receipts/{shopper}", 1, False),
    "node_status": ("storesense/{store}/nodes/{node}/status", 0, False),
    "offer": ("storesense/{store}/shoppers/{shopper}/offers", 1, False),
    "light_command": ("storesense/{store}/lights/{fixture}/set", 1, False),
    "store_analytics": ("storesense/{store}/analytics/hourly", 1, True),
    "shelf_event": ("storesense/{store}/shelves/{shelf}/events", 1, False),
}


def topic_for(store: str, msg: Envelope) -> str:
    """The MQTT / ZeroMQ topic on which ``msg`` travels for store ``store``."""
    template = TOPICS[msg.type][0]  # type: ignore[attr-defined]
    fields = {"store": store, "source": msg.source}
    for name in ("shopper", "zone", "node", "fixture", "shelf"):
        if name in type(msg).model_fields:
            fields[name] = getattr(msg, name)
    return template.format(**fields)


def qos_for(msg: Envelope) -> int:
    """MQTT QoS for a message: 1 for everything that must not be lost."""
    return TOPICS[msg.type][1]  # type: ignore[attr-defined]


def retained(msg: Envelope) -> bool:
    """Whether the message is published as the retained current state."""
    return TOPICS[msg.type][2]  # type: ignore[attr-defined]


def availability_topic(store: str, node: str) -> str:
    """Retained ``online``/``offline`` topic of a node (its MQTT last will)."""
    return f"storesense/{store}/nodes/{node}/availability"


# --------------------------------------------------------------------------- codec


def encode(msg: Envelope) -> bytes:
    """Serialise a message to compact JSON bytes (deterministic for equal messages)."""
    return msg.model_dump_json().encode("utf-8")


def _check_tree(obj: object) -> None:
    """Raise :class:`MessageError` when parsed JSON nests deeper than :data:`MAX_DEPTH`, holds an
    integer beyond 64 bits or a string that is not valid Unicode (a lone surrogate from ``\\ud800``)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise MessageError(f"nested deeper than {MAX_DEPTH} levels")
            for key, value in item.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise MessageError(f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, int) and not isinstance(item, bool) and not -MAX_INT - 1 <= item <= MAX_INT:
            raise MessageError("integer out of the signed 64-bit range")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError("string is not valid Unicode (a lone surrogate)") from None


def decode(data: bytes | str) -> Envelope:
    """Parse and validate one message strictly; raise :class:`MessageError` with the reason.

    Besides the message's own schema: at most :data:`MAX_MESSAGE_BYTES`, valid UTF-8 with no
    lone surrogates, nested at most :data:`MAX_DEPTH` deep, integers within 64 bits (NaN and
    Infinity are refused by every message's fields), event and source ids of :data:`ID_PATTERN`. No input raises anything else.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_MESSAGE_BYTES:
            raise MessageError(f"too large ({len(data)} bytes, limit {MAX_MESSAGE_BYTES})")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
        if len(text) > MAX_MESSAGE_BYTES:
            raise MessageError(f"too large ({len(text)} characters, limit {MAX_MESSAGE_BYTES})")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise MessageError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise MessageError(f"not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(obj, dict):
        raise MessageError(f"expected a JSON object, got {type(obj).__name__}")
    _check_tree(obj)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise MessageError(f"unknown message type {_short(kind)}")
    versions = SCHEMA_VERSIONS.get(kind, (SCHEMA_VERSION,))
    if obj.get("v") not in versions:
        raise MessageError(f"unsupported schema version {obj.get('v')!r} of {kind} "
                           f"(this node reads v{', v'.join(map(str, versions))})")
    try:
        return MESSAGE_TYPES[kind].model_validate(obj)
    except ValidationError as exc:
        raise MessageError(f"invalid {kind}: {describe_validation_error(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # a validator's own failure: still one line
        raise MessageError(f"invalid {kind}: {_short(exc)}") from None


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for log lines about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _printable(text: str, limit: int = 120) -> str:
    """``text`` safe for one log line: escapes for what is not printable UTF-8, cut to ``limit``."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in safe[:limit])
    return safe if len(text) <= limit else safe + "…"


def topic_matches(msg: Envelope, topic: str) -> bool:
    """Whether ``msg`` belongs on ``topic``: its type, source and subject (shopper, zone, node,
    fixture) are the ones :func:`topic_for` puts in the topic, for the store the topic names."""
    parts = topic.split("/", 2)
    if len(parts) < 3 or parts[0] != "storesense" or not parts[1]:
        return False
    try:
        return topic_for(parts[1], msg) == topic
    except (KeyError, ValueError):
        return False


class Decoder:
    """Decodes untrusted bytes for a node: bad messages are counted and skipped.

    ``decode`` returns ``None`` for a malformed, unknown or duplicate message and
    logs one warning naming where it came from and why. ``dedupe`` keeps a
    bounded memory of recent event ids so redelivered QoS 1 messages are
    dropped.
    """

    def __init__(self, name: str = "node", *, dedupe: bool = True, memory: int = 100_000,
                 check_topic: bool = False, log_every_s: float = LOG_EVERY_S):
        self.name = name
        self.dedupe = dedupe
        self.memory = memory
        self.check_topic = check_topic
        self.log_every_s = log_every_s
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self._seen: dict[str, None] = {}
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged, skipped since)

    def decode(self, data: bytes | str, origin: str = "?") -> Envelope | None:
        """Decode ``data`` received on ``origin`` (a topic or file:line).

        With ``check_topic`` the origin is the MQTT / ZeroMQ topic and the message must belong
        on it (:func:`topic_matches`): a ``cart_state`` on a location topic, or a cart event
        under a camera's topic, is rejected before its event id is remembered.
        """
        try:
            msg = decode(data)
            if self.check_topic and not topic_matches(msg, origin):
                raise MessageError(f"topic mismatch: a {msg.type} from {msg.source!r} "  # type: ignore[attr-defined]
                                   f"does not belong on this topic")
        except MessageError as exc:
            self._reject(str(exc), origin)
            return None
        except Exception as exc:  # noqa: BLE001 - no input may raise into a node's loop
            self._reject(f"undecodable ({type(exc).__name__})", origin)
            return None
        if self.dedupe:
            if msg.event_id in self._seen:
                self.duplicates += 1
                return None
            self._seen[msg.event_id] = None
            if len(self._seen) > self.memory:
                self._seen.pop(next(iter(self._seen)))
        self.accepted += 1
        return msg

    def _reject(self, reason: str, origin: str) -> None:
        """Count a rejected message and log it in one line, at most once per ``log_every_s`` per kind."""
        key = reason.split(" (")[0].split(":")[0]
        self.rejected[key] += 1
        now = time.monotonic()
        last, skipped = self._logged.get(key, (-float("inf"), 0))
        if now - last < self.log_every_s:
            self._logged[key] = (last, skipped + 1)
            return
        self._logged[key] = (now, 0)
        more = f" ({skipped} more like it not logged)" if skipped else ""
        log.warning("%s: skipped message on %s: %s%s", self.name, _printable(origin), reason, more)

    @property
    def rejected_total(self) -> int:
        """Number of messages skipped as malformed or unknown."""
        return sum(self.rejected.values())


# --------------------------------------------------------------------------- stamping


#: a hex digit with its two high bits set to the RFC 4122 variant (10): ``(d & 0x3) | 0x8``
_VARIANT_DIGIT = {f"{d:x}": f"{(d & 0x3) | 0x8:x}" for d in range(16)}


class Stamper:
    """Creates messages for one source, filling in the envelope.

    ``seq`` counts from 1 per source; ``event_id`` is a uuid5 of the source, a run
    id and the seq, so ids are unique across restarts (a fresh random run id each
    start) yet reproducible when a run id is given (replay, tests).
    """

    def __init__(self, source: str, run_id: str | None = None):
        self.source = source
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        self.seq = 0
        self._prefix: tuple = (None, None, None)  # (source, run_id, SHA-1 of the uuid5 input up to the seq)

    def event_id(self, seq: int) -> str:
        """``str(uuid.uuid5(EVENT_NAMESPACE, f"{source}/{run_id}/{seq}"))``, the same characters, cheaper.

        The SHA-1 of the namespace and the ``source/run_id/`` prefix is kept and
        copied per message; the version (5) and variant bits are set as
        :class:`uuid.UUID` sets them.
        """
        source, run_id, prefix = self._prefix
        if source is not self.source or run_id is not self.run_id:
            prefix = hashlib.sha1(EVENT_NAMESPACE.bytes + f"{self.source}/{self.run_id}/".encode())
            self._prefix = (self.source, self.run_id, prefix)
        h = prefix.copy()
        h.update(str(seq).encode())
        x = h.hexdigest()
        # the version (5) is byte 6's high nibble, the RFC 4122 variant byte 8's two high bits (hex digits 12, 16)
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_DIGIT[x[16]]}{x[17:20]}-{x[20:32]}"

    def make(self, cls: type[Envelope], ts: float, **fields) -> Envelope:
        """Build a ``cls`` message at time ``ts`` with the next sequence number."""
        self.seq += 1
        return cls(event_id=self.event_id(self.seq), source=self.source, seq=self.seq, ts=ts, **fields)
