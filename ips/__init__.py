"""storesense.ips"""
