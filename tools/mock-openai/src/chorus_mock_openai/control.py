"""The control API under `/_mock`: change defaults, queue faults, read the request log.

- `GET  /_mock/config`   current config and queued fault rules
- `POST /_mock/config`   change runtime fields and/or queue a fault rule
- `POST /_mock/reset`    startup config, no fault rules, empty request log
- `GET  /_mock/requests` the request log (`limit`, `tag`, `model`, `request_id` filters)
- `DELETE /_mock/requests` empty the request log
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

import orjson

from chorus_mock_openai.errors import invalid_request
from chorus_mock_openai.faults import FaultRule
from chorus_mock_openai.recorder import Outcome, RequestRecord
from chorus_mock_openai.state import MockState

__all__ = ["apply_config", "requests_body", "state_body"]

_CONTROL_FIELDS = frozenset({"fault", "clear_faults"})


def state_body(state: MockState) -> bytes:
    """The current config and fault rules as JSON."""
    return orjson.dumps(state.as_json())


def apply_config(state: MockState, body: bytes) -> bytes:
    """Apply a `POST /_mock/config` body all-or-nothing; OpenAIError 400 if it is invalid.

    Body fields: any of `ttft_ms`, `inter_token_ms`, `tokens`, `fault_after`,
    `retry_after_s`, `models`, `require_auth`; `fault`, a rule object
    `{"mode", "count"?, "model"?, "after"?}` or a list of them; `clear_faults`,
    which drops queued rules before new ones are added.
    """
    try:
        changes = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise invalid_request("control body is not valid JSON") from None
    if not isinstance(changes, Mapping):
        raise invalid_request("control body must be a JSON object")
    try:
        config = state.config.updated(
            {k: v for k, v in changes.items() if k not in _CONTROL_FIELDS}
        )
        rules = _parse_rules(changes.get("fault"))
        clear = changes.get("clear_faults", False)
        if not isinstance(clear, bool):
            raise ValueError("'clear_faults' must be a boolean")
    except ValueError as exc:
        raise invalid_request(str(exc)) from None
    state.config = config
    if clear:
        state.faults.clear()
    for rule in rules:
        state.faults.add(rule)
    return state_body(state)


def _parse_rules(value: object) -> list[FaultRule]:
    if value is None:
        return []
    if isinstance(value, list):
        return [FaultRule.from_json(item) for item in value]
    return [FaultRule.from_json(value)]


async def requests_body(state: MockState, query_string: bytes) -> bytes:
    """The request log as `{"object": "list", "data": [...]}`, oldest first.

    Query parameters: `tag`, `model`, `request_id` filter; `limit` keeps the
    most recent N; `wait_ms` first waits (up to that long) until at least one
    record matches the filters and none of the matches is still in progress,
    so a test can wait for the mock to notice a disconnect without polling.
    """
    query = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1")).items()}
    limit = _optional_int(query, "limit")
    wait_ms = _optional_int(query, "wait_ms")
    recorder = state.recorder

    def matching(limit: int | None = None) -> list[RequestRecord]:
        return recorder.query(
            limit=limit,
            tag=query.get("tag"),
            model=query.get("model"),
            request_id=query.get("request_id"),
        )

    def settled() -> bool:
        matches = matching()
        return bool(matches) and all(r.outcome is not Outcome.IN_PROGRESS for r in matches)

    if wait_ms:
        await recorder.wait_until(settled, wait_ms / 1000)
    records = matching(limit)
    return orjson.dumps({"object": "list", "data": records})


def _optional_int(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise invalid_request(f"'{name}' must be a non-negative integer", param=name)
    return int(text)
