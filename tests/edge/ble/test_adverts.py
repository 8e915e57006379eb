"""BLE advertisement parsing on real advertisement layouts, through bleak's own objects."""

from __future__ import annotations

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from storesense.edge.ble.adverts import (
    APPLE_COMPANY_ID,
    EDDYSTONE_UUID,
    TagFilter,
    advertisement_from_bytes,
    parse_advertisement,
)
from storesense.errors import StoresenseError

# Raw advertising payloads (AD structures) as real devices send them.
# An iBeacon as listed by an HM-10 module's AT+SCAN: flags 0x06, Apple manufacturer data
# 02 15, UUID B5B182C7-EAB1-4988-AA99-B5C1517008D9, major 1, minor 0xE6F0, measured power 0xC5 (-59 dBm).
IBEACON = "0201061AFF4C000215B5B182C7EAB14988AA99B5C1517008D90001E6F0C5"
# A Blue Charm beacon's Eddystone-UID frame: flags, 16-bit UUID list {FEAA}, service data
# FEAA 00 EE (-18 dBm at 0 m) namespace "bluecharm1" instance 000000000001, reserved 0000,
# then service data 0x2080, the complete local name "BlueCharm_169685" and zero padding.
EDDYSTONE_BLUECHARM = ("0201060303AAFE1716AAFE00EE626C7565636861726D31000000000001000009168020691E0EFE1355"
                       "1109426C7565436861726D5F313639363835000000")
# A MikroTik tag's Eddystone-UID (no flags structure), power -27 dBm at 0 m.
EDDYSTONE_MIKROTIK = "0303AAFE1716AAFE00E5B2B98DE4C81C47C2B14E7500000000000000"
# A RuuviTag data format 5 (manufacturer 0x0499) from Ruuvi's published test vector.
RUUVI = "0201061BFF99040512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"


def device(address="C4:7C:8D:6A:2F:01", name=None) -> BLEDevice:
    return BLEDevice(address, name, details={"path": "/org/bluez/hci0/dev_" + address.replace(":", "_")})


def test_ibeacon_from_raw_bytes():
    adv = advertisement_from_bytes(bytes.fromhex(IBEACON), rssi=-71)
    assert isinstance(adv, AdvertisementData)
    assert set(adv.manufacturer_data) == {APPLE_COMPANY_ID}
    a = parse_advertisement(device(), adv)
    assert a.kind == "ibeacon"
    assert a.uuid == "b5b182c7-eab1-4988-aa99-b5c1517008d9"
    assert (a.major, a.minor) == (1, 0xE6F0)
    assert a.tx_power == -59.0
    assert a.rssi == -71.0
    assert a.tag == "b5b182c7-eab1-4988-aa99-b5c1517008d9-1-59120"


def test_ibeacon_as_bluez_delivers_it():
    """BlueZ gives manufacturer data keyed by company id without those two bytes: same result."""
    payload = bytes.fromhex(IBEACON)[7:]  # after length, type FF and the company id 4C00
    adv = AdvertisementData(local_name=None, manufacturer_data={0x004C: payload}, service_data={},
                            service_uuids=[], tx_power=None, rssi=-64, platform_data=())
    a = parse_advertisement(device(), adv)
    assert (a.kind, a.major, a.minor, a.tx_power) == ("ibeacon", 1, 0xE6F0, -59.0)


def test_eddystone_uid_bluecharm():
    adv = advertisement_from_bytes(bytes.fromhex(EDDYSTONE_BLUECHARM), rssi=-80)
    assert adv.local_name == "BlueCharm_169685"
    assert EDDYSTONE_UUID in adv.service_uuids
    a = parse_advertisement(device(), adv)
    assert a.kind == "eddystone_uid"
    assert bytes.fromhex(a.namespace) == b"bluecharm1"
    assert a.instance == "000000000001"
    assert a.tx_power == -18 - 41  # 0 m power -> 1 m
    assert a.tag == "626c7565636861726d31000000000001"


def test_eddystone_uid_mikrotik():
    a = parse_advertisement(device(), advertisement_from_bytes(bytes.fromhex(EDDYSTONE_MIKROTIK), rssi=-47))
    assert (a.kind, a.namespace, a.instance, a.tx_power) == (
        "eddystone_uid", "b2b98de4c81c47c2b14e", "750000000000", -27.0 - 41)


def test_raw_manufacturer_data_keeps_company_and_payload():
    adv = advertisement_from_bytes(bytes.fromhex(RUUVI), rssi=-55)
    a = parse_advertisement(device("F0:0D:12:34:56:78"), adv)
    assert a.kind == "manufacturer"
    assert a.company_id == 0x0499
    assert a.payload[:1] == b"\x05"  # data format 5
    assert a.tag == "F0:0D:12:34:56:78"


def test_not_a_beacon_and_truncated_payloads():
    # only flags and a name: nothing to report
    assert parse_advertisement(device(), advertisement_from_bytes(bytes.fromhex("020106050954616731"), -60)) is None
    # an Apple payload too short for an iBeacon is plain manufacturer data
    short = AdvertisementData(None, {APPLE_COMPANY_ID: bytes.fromhex("0215b5b1")}, {}, [], None, -60, ())
    assert parse_advertisement(device(), short).kind == "manufacturer"
    with pytest.raises(StoresenseError, match="claims 26 bytes"):
        advertisement_from_bytes(bytes.fromhex(IBEACON)[:20], rssi=-60)


def test_tag_filter_rules():
    ib = parse_advertisement(device(), advertisement_from_bytes(bytes.fromhex(IBEACON), -70))
    ed = parse_advertisement(device(), advertisement_from_bytes(bytes.fromhex(EDDYSTONE_BLUECHARM), -70))
    ru = parse_advertisement(device("F0:0D:12:34:56:78"), advertisement_from_bytes(bytes.fromhex(RUUVI), -70))
    # no rules: beacons only
    assert TagFilter().accepts(ib) and TagFilter().accepts(ed) and not TagFilter().accepts(ru)
    app = TagFilter(["ibeacon:B5B182C7-EAB1-4988-AA99-B5C1517008D9"])
    assert app.accepts(ib) and not app.accepts(ed)
    assert TagFilter(["ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9:1:59120"]).accepts(ib)
    assert not TagFilter(["ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9:2"]).accepts(ib)
    assert TagFilter(["eddystone:626c7565636861726d31"]).accepts(ed)
    assert not TagFilter(["eddystone:626c7565636861726d31:000000000002"]).accepts(ed)
    assert TagFilter(["mfr:0x0499:05"]).accepts(ru) and not TagFilter(["mfr:0x0499:03"]).accepts(ru)
    assert TagFilter(["mac:f0:0d:12:34:56:78"]).accepts(ru)
    for bad in ["ibeacon:not-a-uuid", "eddystone:abc", "mfr:xyz", "wifi:foo", "ibeacon:"]:
        with pytest.raises(StoresenseError, match="tag filter"):
            TagFilter([bad])
