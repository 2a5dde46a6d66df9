"""Rendered reports (plots) for managers."""
