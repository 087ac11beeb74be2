"""Entitlements: may this tenant's client read this product's data?"""
