"""Gateway API keys (``GATEWAY_API_KEYS``): service credentials such as the worker's.

Two formats:

- comma-separated ``name:key`` pairs — ``worker:s3cret,batch:0th3r`` (a name is
  ``[A-Za-z0-9_.-]``; the key is everything after the first colon);
- a JSON list of objects — ``[{"name": "worker", "key": "s3cret"}, {"name": "batch",
  "key_sha256": "<hex>", "requests_per_minute": 60, "tokens_per_minute": 100000,
  "concurrent_streams": 4, "models": ["assistant"]}]``: ``key_sha256`` lets the secret
  itself stay out of the configuration; limits override the defaults for that key;
  ``end_user_requests_per_minute`` / ``end_user_tokens_per_minute`` /
  ``end_user_concurrent_streams`` override what each end user the key calls for (OpenAI's
  ``user``) may use of it (the per-user defaults otherwise); ``models`` (optional)
  restricts the models the key may call.

Only SHA-256 digests are kept in memory. A presented key is hashed and the digest is
looked up, then compared with :func:`hmac.compare_digest`, so neither the lookup nor the
comparison leaks how much of a guessed key was right.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass

__all__ = ["ApiKey", "ApiKeyConfigError", "ApiKeys", "parse_api_keys"]

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_streams",
    "end_user_requests_per_minute",
    "end_user_tokens_per_minute",
    "end_user_concurrent_streams",
)


class ApiKeyConfigError(ValueError):
    """``GATEWAY_API_KEYS`` is malformed; the message says which entry."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key: its name (the billing subject is ``key:<name>``) and overrides."""

    name: str
    digest: bytes
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None
    end_user_requests_per_minute: int | None = None
    end_user_tokens_per_minute: int | None = None
    end_user_concurrent_streams: int | None = None
    models: frozenset[str] | None = None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _entry(raw: object, index: int) -> ApiKey:
    if not isinstance(raw, dict):
        msg = f"GATEWAY_API_KEYS entry {index} is not an object"
        raise ApiKeyConfigError(msg)
    unknown = set(raw) - {"name", "key", "key_sha256", "models", *_LIMIT_FIELDS}
    if unknown:
        msg = f"GATEWAY_API_KEYS entry {index}: unknown fields {sorted(unknown)}"
        raise ApiKeyConfigError(msg)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        msg = f"GATEWAY_API_KEYS entry {index}: name must be 1-64 of [A-Za-z0-9_.-]"
        raise ApiKeyConfigError(msg)
    key, hashed = raw.get("key"), raw.get("key_sha256")
    if (key is None) == (hashed is None):
        msg = f"GATEWAY_API_KEYS entry {name!r}: give exactly one of key, key_sha256"
        raise ApiKeyConfigError(msg)
    if key is not None:
        if not isinstance(key, str) or not key:
            msg = f"GATEWAY_API_KEYS entry {name!r}: key must be a non-empty string"
            raise ApiKeyConfigError(msg)
        digest = _digest(key)
    else:
        if not isinstance(hashed, str) or not _HEX64.fullmatch(hashed.lower()):
            msg = f"GATEWAY_API_KEYS entry {name!r}: key_sha256 must be 64 hex digits"
            raise ApiKeyConfigError(msg)
        digest = bytes.fromhex(hashed)
    limits: dict[str, int] = {}
    for field in _LIMIT_FIELDS:
        value = raw.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"GATEWAY_API_KEYS entry {name!r}: {field} must be an integer >= 0"
            raise ApiKeyConfigError(msg)
        limits[field] = value
    models = raw.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) for m in models)
    ):
        msg = f"GATEWAY_API_KEYS entry {name!r}: models must be a list of strings"
        raise ApiKeyConfigError(msg)
    return ApiKey(
        name=name,
        digest=digest,
        models=frozenset(models) if models is not None else None,
        **limits,
    )


def parse_api_keys(value: str) -> list[ApiKey]:
    """Parse ``GATEWAY_API_KEYS`` (empty: no keys, only user tokens are accepted)."""
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"GATEWAY_API_KEYS is not valid JSON: {exc}"
            raise ApiKeyConfigError(msg) from None
        if not isinstance(items, list):
            msg = "GATEWAY_API_KEYS JSON must be a list"
            raise ApiKeyConfigError(msg)
        keys = [_entry(item, i) for i, item in enumerate(items)]
    else:
        keys = []
        for i, pair in enumerate(p.strip() for p in text.split(",")):
            name, sep, key = pair.partition(":")
            if not sep:
                msg = f"GATEWAY_API_KEYS entry {i} is not name:key"
                raise ApiKeyConfigError(msg)
            keys.append(_entry({"name": name.strip(), "key": key.strip()}, i))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        msg = "GATEWAY_API_KEYS names must be unique"
        raise ApiKeyConfigError(msg)
    if len({k.digest for k in keys}) != len(keys):
        msg = "GATEWAY_API_KEYS has the same key under two names"
        raise ApiKeyConfigError(msg)
    return keys


class ApiKeys:
    """Looks presented keys up by digest."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest = {k.digest: k for k in keys}

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, presented: str) -> ApiKey | None:
        """The key ``presented`` matches, or None."""
        digest = _digest(presented)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        return found
