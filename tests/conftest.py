"""Shared helpers. Server fixtures live in tests/integration/conftest.py; unit tests need none."""
