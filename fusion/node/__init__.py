"""The fusion node: edge messages in, shopper locations, zone events and carts out.

:class:`FusionNode` is transport-free: feed it messages with :meth:`handle`
(from ZeroMQ, a recording or the simulator: see :func:`run`) and it calls
``emit`` with every message it produces. Inputs pass through a
:class:`~storesense.fusion.reorder.ReorderBuffer` (bounded out-of-order window;
later messages are counted and dropped), so outputs depend only on the input
messages and a replay gives byte-identical outputs.

What happens to each input:

- ``person_observation``: grouped per camera frame, associated with the floor
  tracks (:mod:`.tracker`); a confirmed track at an entry zone opens a session
  and its cart (``cart_event`` new) when a check-in waits for it or when it
  walks in (a false positive standing at the door never does); a lost
  session is re-bound to the new track that fits it; a session standing in an
  exit zone is closed and gets its ``receipt``;
- ``check_in``: gives its shopper's tag to the shopper standing at its gate
  (stores whose entry zones have gates), otherwise to the session in that entry
  zone (several there: BLE decides);
- ``ble_sighting``: through the BLE positioner (``storesense.ips`` by default,
  when the store has three or more BLE nodes) into a fix for the tag,
  which keeps the session's track alive through occlusion, re-binds a lost
  session, and reveals swapped tracks (:mod:`.identity`);
- ``hand_shelf_interaction``: attributed to the session whose floor track the
  camera's track id is bound to, then to the pick decider;
- ``weight_change``: pick/put-back decision -> ``cart_event`` update and the
  retained ``cart_state``.

Where each part lives:

- :mod:`.core`: :class:`FusionNode` itself: input order, frames to the floor
  tracker, sessions opening and closing, zones, receipts, housekeeping;
- :mod:`.checkins`: check-ins at the gates and in entry zones, BLE fixes and
  the swaps they reveal;
- :mod:`.looks`: who is who by appearance: references, meetings decided,
  re-binding, doubt settled late;
- :mod:`.carts`: hands to shoppers, pick/put-back decisions onto carts, changes
  moved or flagged for review, shelf events.
"""

from .carts import UNSEEN_NEAR_M
from .core import BlePositioner, FusionNode, run

__all__ = ["BlePositioner", "FusionNode", "UNSEEN_NEAR_M", "run"]
