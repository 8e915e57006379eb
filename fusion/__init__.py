"""storesense.fusion"""
