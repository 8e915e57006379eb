"""edge/ble."""
