"""``GATEWAY_API_KEYS`` formats and lookups."""

from __future__ import annotations

import hashlib

import pytest

from chorus_gateway.domain.api_keys import ApiKeyConfigError, ApiKeys, parse_api_keys


def test_name_key_pairs() -> None:
    keys = ApiKeys(parse_api_keys("worker:s3cret:with:colons, batch:other"))
    found = keys.find("s3cret:with:colons")
    assert found is not None
    assert found.name == "worker"
    assert keys.find("other") is not None
    assert keys.find("nope") is None


def test_json_with_hashes_limits_and_models() -> None:
    digest = hashlib.sha256(b"hidden").hexdigest()
    [key] = parse_api_keys(
        f'[{{"name": "b", "key_sha256": "{digest}", "tokens_per_minute": 5, "models": ["m"]}}]'
    )
    assert ApiKeys([key]).find("hidden") == key
    assert (key.tokens_per_minute, key.requests_per_minute, key.models) == (5, None, {"m"})


@pytest.mark.parametrize(
    "value",
    [
        "nocolon",
        "a:k,a:k2",
        "a:k,b:k",
        '[{"name": "x"}]',
        '[{"name": "x", "key": "k", "rpm": 1}]',
        '[{"name": "bad name", "key": "k"}]',
        '[{"name": "x", "key_sha256": "zz"}]',
    ],
)
def test_malformed_configuration_is_refused(value: str) -> None:
    with pytest.raises(ApiKeyConfigError):
        parse_api_keys(value)
