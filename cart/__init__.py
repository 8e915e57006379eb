"""storesense.cart"""
