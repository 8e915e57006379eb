"""storesense.edge"""
