"""storesense.datasets"""
