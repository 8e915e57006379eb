"""BLE advertisement parsing and tag filtering for the BLE receiver node.

bleak hands every advertisement over as an ``AdvertisementData`` (manufacturer
data keyed by company id without those two bytes, service data keyed by
128-bit UUID string). :func:`parse_advertisement` recognises:

iBeacon
    Apple company id 0x004C, payload ``02 15`` + 16-byte proximity UUID +
    major (2, big-endian) + minor (2) + measured power at 1 m (1, signed dBm).
    Tag id ``<uuid>-<major>-<minor>``.
Eddystone-UID
    service data for UUID 0xFEAA, frame type ``00`` + ranging power at 0 m
    (1, signed) + 10-byte namespace + 6-byte instance (+ 2 reserved bytes).
    Tag id ``<namespace hex><instance hex>``; its power at 1 m is the 0 m value
    minus 41 dB (Eddystone's convention).
raw manufacturer data
    any other company id; the tag id is the device address, the company id and
    payload are kept for filtering.

:func:`advertisement_from_bytes` decodes a raw advertising payload (the AD
structures, as an HCI dump, a BLE gateway or a recording gives them) into
bleak's own ``AdvertisementData``, the same object a live scan produces.

:class:`TagFilter` keeps only configured tags or app ids, from rules such as
``ibeacon:<uuid>[:<major>[:<minor>]]``, ``eddystone:<namespace>[:<instance>]``,
``mfr:<company id>[:<hex prefix>]`` and ``mac:<address>``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from ...errors import StoresenseError

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
#: Eddystone advertises power at 0 m; 1 m is this much weaker (free space, 2.4 GHz).
EDDYSTONE_0M_TO_1M_DB = 41
_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class Advert:
    """One recognised advertisement: what kind, the tag id, RSSI and advertised power at 1 m."""

    kind: str  # "ibeacon" | "eddystone_uid" | "manufacturer"
    tag: str
    address: str
    rssi: float
    tx_power: float | None = None
    uuid: str | None = None
    major: int | None = None
    minor: int | None = None
    namespace: str | None = None
    instance: str | None = None
    company_id: int | None = None
    payload: bytes = b""


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def parse_ibeacon(data: bytes) -> tuple[str, int, int, int] | None:
    """(uuid, major, minor, measured power) from Apple manufacturer data, or None if not an iBeacon."""
    if len(data) < 23 or data[0] != 0x02 or data[1] != 0x15:
        return None
    return str(uuid.UUID(bytes=bytes(data[2:18]))), int.from_bytes(data[18:20], "big"), \
        int.from_bytes(data[20:22], "big"), _signed(data[22])


def parse_eddystone_uid(data: bytes) -> tuple[str, str, int] | None:
    """(namespace hex, instance hex, power at 0 m) from 0xFEAA service data, or None if not a UID frame."""
    if len(data) < 18 or data[0] != 0x00:
        return None
    return bytes(data[2:12]).hex(), bytes(data[12:18]).hex(), _signed(data[1])


def parse_advertisement(device: BLEDevice, adv: AdvertisementData) -> Advert | None:
    """Recognise an advertisement; None for one that carries neither beacon nor manufacturer data."""
    rssi = float(adv.rssi)
    apple = adv.manufacturer_data.get(APPLE_COMPANY_ID)
    if apple is not None:
        ib = parse_ibeacon(apple)
        if ib is not None:
            u, major, minor, power = ib
            return Advert("ibeacon", f"{u}-{major}-{minor}", device.address, rssi, float(power),
                          uuid=u, major=major, minor=minor, company_id=APPLE_COMPANY_ID, payload=bytes(apple))
    for key, data in adv.service_data.items():
        if key.lower() == EDDYSTONE_UUID:
            ed = parse_eddystone_uid(data)
            if ed is not None:
                ns, inst, p0 = ed
                return Advert("eddystone_uid", ns + inst, device.address, rssi,
                              float(p0 - EDDYSTONE_0M_TO_1M_DB), namespace=ns, instance=inst, payload=bytes(data))
    if adv.manufacturer_data:
        company, data = next(iter(sorted(adv.manufacturer_data.items())))
        return Advert("manufacturer", device.address.upper(), device.address, rssi,
                      float(adv.tx_power) if adv.tx_power is not None else None,
                      company_id=int(company), payload=bytes(data))
    return None


def advertisement_from_bytes(raw: bytes, rssi: int, *, platform_data: tuple = ()) -> AdvertisementData:
    """Decode raw AD structures (length, type, value ...) into bleak's ``AdvertisementData``.

    Handles flags, 16/32/128-bit service UUID lists, 16-bit service data,
    manufacturer data, TX power level and local names; zero padding ends the
    payload. Raises StoresenseError on a structure that runs past the end.
    """
    name = None
    mfr: dict[int, bytes] = {}
    sdata: dict[str, bytes] = {}
    uuids: list[str] = []
    tx = None
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0:
            break
        if i + 1 + length > len(raw):
            raise StoresenseError(f"advertisement: AD structure at byte {i} claims {length} bytes, "
                                  f"only {len(raw) - i - 1} left")
        kind, value = raw[i + 1], bytes(raw[i + 2: i + 1 + length])
        if kind in (0x02, 0x03):  # 16-bit service UUIDs
            uuids += [f"0000{int.from_bytes(value[j:j + 2], 'little'):04x}{_BASE_UUID_SUFFIX}"
                      for j in range(0, len(value) - 1, 2)]
        elif kind in (0x04, 0x05):  # 32-bit
            uuids += [f"{int.from_bytes(value[j:j + 4], 'little'):08x}{_BASE_UUID_SUFFIX}"
                      for j in range(0, len(value) - 3, 4)]
        elif kind in (0x06, 0x07):  # 128-bit
            uuids += [str(uuid.UUID(bytes=value[j:j + 16][::-1])) for j in range(0, len(value) - 15, 16)]
        elif kind in (0x08, 0x09):
            name = value.decode("utf-8", errors="replace")
        elif kind == 0x0A and value:
            tx = _signed(value[0])
        elif kind == 0x16 and len(value) >= 2:
            sdata[f"0000{int.from_bytes(value[:2], 'little'):04x}{_BASE_UUID_SUFFIX}"] = value[2:]
        elif kind == 0xFF and len(value) >= 2:
            mfr[int.from_bytes(value[:2], "little")] = value[2:]
        i += 1 + length
    return AdvertisementData(local_name=name, manufacturer_data=mfr, service_data=sdata, service_uuids=uuids,
                             tx_power=tx, rssi=int(rssi), platform_data=platform_data)


@dataclass(frozen=True)
class _Rule:
    kind: str
    a: str | None = None
    b: str | None = None
    c: str | None = None


class TagFilter:
    """Which advertisements the node reports. No rules: every recognised beacon (not raw manufacturer data)."""

    def __init__(self, rules: list[str] | tuple[str, ...] = ()):
        self.rules = [self._parse(r) for r in rules]

    @staticmethod
    def _parse(rule: str) -> _Rule:
        kind, _, rest = rule.strip().partition(":")
        kind = kind.lower()
        parts = [p.strip() for p in rest.split(":")] if rest else []
        bad = StoresenseError(
            f"tag filter {rule!r}: expected ibeacon:<uuid>[:<major>[:<minor>]], eddystone:<namespace>[:<instance>], "
            "mfr:<company id>[:<hex prefix>] or mac:<address>")
        if kind == "ibeacon" and 1 <= len(parts) <= 3:
            try:
                u = str(uuid.UUID(parts[0]))
                nums = [str(int(p)) for p in parts[1:]]
            except ValueError:
                raise bad from None
            return _Rule("ibeacon", u, *nums)
        if kind == "eddystone" and 1 <= len(parts) <= 2:
            ns = parts[0].lower().replace("0x", "")
            inst = parts[1].lower().replace("0x", "") if len(parts) > 1 else None
            if len(ns) != 20 or (inst is not None and len(inst) != 12) or not all(
                    ch in "0123456789abcdef" for ch in ns + (inst or "")):
                raise bad
            return _Rule("eddystone", ns, inst)
        if kind == "mfr" and 1 <= len(parts) <= 2:
            try:
                company = str(int(parts[0], 0))
                prefix = bytes.fromhex(parts[1]).hex() if len(parts) > 1 else None
            except ValueError:
                raise bad from None
            return _Rule("mfr", company, prefix)
        if kind == "mac" and rest:
            return _Rule("mac", rest.strip().upper())
        raise bad

    def accepts(self, advert: Advert) -> bool:
        """True when the advertisement matches a rule (or, without rules, is a beacon)."""
        if not self.rules:
            return advert.kind != "manufacturer"
        for r in self.rules:
            if r.kind == "ibeacon" and advert.kind == "ibeacon" and advert.uuid == r.a \
                    and (r.b is None or str(advert.major) == r.b) and (r.c is None or str(advert.minor) == r.c):
                return True
            if r.kind == "eddystone" and advert.kind == "eddystone_uid" and advert.namespace == r.a \
                    and (r.b is None or advert.instance == r.b):
                return True
            if r.kind == "mfr" and advert.company_id is not None and str(advert.company_id) == r.a \
                    and (r.b is None or advert.payload.hex().startswith(r.b)):
                return True
            if r.kind == "mac" and advert.address.upper() == r.a:
                return True
        return False
