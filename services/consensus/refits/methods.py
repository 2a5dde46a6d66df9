"""The categorical aggregation methods a project can choose, by name (the aggregation package's registry)."""

from __future__ import annotations

from services.consensus.aggregation import DEFAULT_METHOD, METHODS

# Names the api's project settings use for the same methods.
ALIASES = {"wawa": "weighted_majority_vote", "mv": "majority_vote", "ds": "dawid_skene", "default": DEFAULT_METHOD,
           "one_coin": "one_coin_dawid_skene"}


def canonical_method(name: str) -> str:
    name = ALIASES.get(name, name)
    return name if name in METHODS else DEFAULT_METHOD


def is_known_method(name: str) -> bool:
    return ALIASES.get(name, name) in METHODS


__all__ = ["ALIASES", "DEFAULT_METHOD", "METHODS", "canonical_method", "is_known_method"]
