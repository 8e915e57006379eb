"""The API's request and response models (pydantic): they are the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ...contracts import ReceiptLine


class LineOut(BaseModel):
    """A cart line with its confidence and review state."""

    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name.")
    quantity: int = Field(description="Items in the cart.")
    unit_price: float = Field(description="Price per item.")
    amount: float = Field(description="quantity × unit_price.")
    confidence: float = Field(description="Lowest confidence of the changes behind the line (1 once a person confirmed).")
    needs_review: bool = Field(description="True while a change behind the line awaits review.")
    pending_review: list[str] = Field(description="Event ids of the changes awaiting review.")
    corrected: bool = Field(description="True when a terminal corrected the line.")


class CorrectionOut(BaseModel):
    """A correction made at a terminal."""

    id: str = Field(description="Correction id.")
    sku: str = Field(description="Product SKU.")
    quantity_before: int = Field(description="Items before the correction.")
    quantity_after: int = Field(description="Items after it.")
    reason: str = Field(description="Why the line was corrected.")
    terminal: str = Field(description="Terminal that corrected it.")
    ts: float = Field(description="When, Unix seconds.")


class CartOut(BaseModel):
    """A cart as a checkout terminal reads it."""

    shopper: str = Field(description="Pseudonymous session id.")
    status: Literal["open", "closed", "settled"] = Field(description="open: shopping; closed: left; settled: paid.")
    currency: str = Field(description="ISO 4217 currency.")
    total: float = Field(description="Sum of line amounts.")
    lines: list[LineOut] = Field(description="Current lines.")
    pending_review: list[str] = Field(description="Event ids of the cart's changes awaiting review.")
    corrections: list[CorrectionOut] = Field(description="Corrections made at terminals.")
    history_complete: bool = Field(description="False when the hub joined after the session began (lines then start "
                                               "from the fusion's cart state).")
    receipt_id: str | None = Field(description="The settled receipt, once paid.")
    paid_total: float = Field(default=0.0, description="Paid so far: the settlement and follow-up charges (a paid "
                                                        "receipt never changes).")
    followup: list[LineOut] = Field(default_factory=list,
                                    description="Settled carts: per product, what was taken (+) or put back (-) since "
                                                "the last payment; positive lines are settled as a follow-up charge.")
    followup_total: float = Field(default=0.0, description="Amount of the follow-up lines.")
    followup_receipt_ids: list[str] = Field(default_factory=list, description="Receipts of follow-up charges paid.")


class SessionOut(BaseModel):
    """A shopper session in the terminal's list."""

    shopper: str = Field(description="Pseudonymous session id.")
    status: Literal["open", "closed", "settled"] = Field(description="Session status.")
    opened_ts: float | None = Field(description="When the session began.")
    closed_ts: float | None = Field(description="When the shopper left, if they did.")
    items: int = Field(description="Items in the cart.")
    total: float = Field(description="Cart total.")
    needs_review: bool = Field(description="True when a line awaits review.")
    followup_total: float = Field(default=0.0, description="Settled sessions: the amount taken since the last "
                                                           "payment, to settle as a follow-up charge (listed by default "
                                                           "while it is not zero).")


class CheckoutIn(BaseModel):
    """A checkout request."""

    method: str = Field(default="card", min_length=1, description="Payment method passed to the provider.")


class ReceiptOut(BaseModel):
    """A settled receipt."""

    receipt_id: str = Field(description="Receipt id.")
    shopper: str = Field(description="Pseudonymous session id.")
    lines: list[ReceiptLine] = Field(description="Lines bought (as on the wire).")
    total: float = Field(description="Amount paid.")
    currency: str = Field(description="ISO 4217 currency.")
    opened_ts: float = Field(description="When the session began.")
    closed_ts: float = Field(description="When the shopper left (or checked out).")
    settled_ts: float = Field(description="When it was paid.")
    terminal: str = Field(description="Terminal that settled it.")
    payment_provider: str = Field(description="Payment provider.")
    payment_ref: str = Field(description="The provider's reference.")
    text_url: str = Field(description="Where the printable text receipt is.")


class CorrectionIn(BaseModel):
    """A terminal's correction of one line (a dispute)."""

    sku: str = Field(min_length=1, description="Product SKU of the line.")
    quantity: int = Field(ge=0, le=1000, description="The right number of items.")
    reason: str = Field(min_length=3, max_length=500, description="Why (kept with the cart and printed).")


class ReviewOut(BaseModel):
    """A cart change flagged for review, with its evidence."""

    event_id: str = Field(description="The cart event's id (identifies the change).")
    shopper: str = Field(description="Pseudonymous session id.")
    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name.")
    quantity: int = Field(description="Signed change: +n picked, -n put back.")
    confidence: float = Field(description="The fusion's confidence in the change.")
    shelf: str | None = Field(description="Shelf involved.")
    plate: str | None = Field(description="Plate involved.")
    evidence: list[str] = Field(description="event_ids of the edge messages behind the decision.")
    reason: str = Field(description="The fusion's explanation.")
    alternatives: list[str] = Field(default_factory=list,
                                    description="Other shoppers (session ids) who may have made the change instead.")
    ts: float = Field(description="When the change was decided.")
    review: Literal["pending", "accepted", "rejected"] = Field(description="Review state.")
    decided_by: str | None = Field(description="Terminal that decided it.")
    note: str | None = Field(description="The reviewer's note.")


class ReviewIn(BaseModel):
    """A review decision."""

    decision: Literal["accept", "reject"] = Field(description="accept: the change stands; reject: it is undone.")
    note: str = Field(default="", max_length=500, description="Optional note.")


class ReviewDecisionOut(BaseModel):
    """The decided item and the cart after the decision."""

    item: ReviewOut = Field(description="The decided change.")
    cart: CartOut = Field(description="The cart after the decision.")


class PointIn(BaseModel):
    """A floor point in metres."""

    x: float = Field(description="Floor x, metres.")
    y: float = Field(description="Floor y, metres.")


class RouteIn(BaseModel):
    """A wayfinding request: a shopping list and where to start."""

    items: list[str] = Field(min_length=1, max_length=100, description="SKUs or product names (or a unique part).")
    start: PointIn | None = Field(default=None, description="Start point; default: the shopper's live position.")
    shopper: str | None = Field(default=None, description="Session id: its live position is the start, and its "
                                                          "lights are guided.")
    end: PointIn | None = Field(default=None, description="Where the route should end (e.g. the checkout).")
    guide_lights: bool = Field(default=True, description="Publish guidance commands to the fixtures along the path.")


class StopOut(BaseModel):
    """One stop of a route."""

    shelf: str = Field(description="Shelf id.")
    point: tuple[float, float] = Field(description="Where to stand, metres.")
    items: list[dict] = Field(description="Items taken there: query, sku, name, plate.")
    distance_from_previous_m: float = Field(description="Walking distance from the previous stop (or the start).")


class RouteOut(BaseModel):
    """A planned route."""

    route_id: str = Field(description="Route id (also in the light commands).")
    start: tuple[float, float] = Field(description="Start, snapped onto free floor.")
    end: tuple[float, float] | None = Field(description="End, if one was asked for.")
    stops: list[StopOut] = Field(description="Stops in visiting order.")
    path: list[tuple[float, float]] = Field(description="The walkable path through every stop, metres.")
    length_m: float = Field(description="Path length, metres.")
    walking_time_s: float = Field(description="Walking time at the store's walking speed, seconds.")
    ordering: str = Field(description="How the order was found: exact or nearest-neighbour+2-opt.")
    lights: list[str] = Field(description="Fixtures along the path, in passing order.")
    lights_published: bool = Field(description="True when guidance commands went out on MQTT.")


class OptOutIn(BaseModel):
    """Opt out of offers (or back in)."""

    opted_out: bool = Field(description="True: no more offers for this session.")
