"""The JWKS cache: unknown kids cannot turn into a flood of fetches; a short api outage keeps the last keys."""

from __future__ import annotations

from shared.auth.keys import JwksKeySource, generate_signing_key


def jwks(*kids: str) -> dict:
    keys = []
    for kid in kids:
        _, jwk = generate_signing_key()
        keys.append({**jwk, "kid": kid})
    return {"keys": keys + [{"kty": "oct", "k": "c2VjcmV0", "kid": "symmetric-key-1"}]}


async def test_unknown_kids_refetch_at_most_once_per_cooldown() -> None:
    calls = []
    document = jwks("key-one-1234")

    async def fetch() -> dict:
        calls.append(1)
        return document

    source = JwksKeySource(fetch, ttl=300, cooldown=60)
    assert (await source.get("key-one-1234"))["kid"] == "key-one-1234"
    for i in range(50):
        assert await source.get(f"random-kid-{i:04d}") is None
    assert len(calls) == 1
    assert await source.get("symmetric-key-1") is None  # non-EC entries are never usable keys
    assert await source.get("../../etc/passwd") is None


async def test_new_kid_after_cooldown_and_outage_tolerance() -> None:
    state = {"doc": jwks("key-one-1234"), "fail": False}

    async def fetch() -> dict:
        if state["fail"]:
            raise ConnectionError("api down")
        return state["doc"]

    source = JwksKeySource(fetch, ttl=0, cooldown=0)
    assert await source.get("key-one-1234")
    state["doc"] = jwks("key-one-1234", "key-two-5678")
    assert await source.get("key-two-5678")  # rotation picked up
    state["fail"] = True
    assert await source.get("key-two-5678")  # last good set survives an outage
