"""storesense.hub"""
