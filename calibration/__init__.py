"""storesense.calibration"""
