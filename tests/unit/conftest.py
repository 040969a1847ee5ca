"""Fixtures shared by the unit tests."""

from .market_book import book  # noqa: F401  (a fixture)
