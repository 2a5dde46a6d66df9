"""Helpers shared by tests (servers the suite starts itself)."""
