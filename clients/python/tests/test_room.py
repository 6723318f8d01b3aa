"""The resuming client helper (its reconnects are exercised by the SIGKILL tests)."""

from __future__ import annotations

from chorus_e2e.realtime_client import Backoff, RoomClient


def test_backoff_is_jittered_capped_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert backoff.attempt == 10
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_the_next_url_resumes_from_the_last_id() -> None:
    client = RoomClient(["http://a:1", "http://b:2"], "lobby", "tok", token_in="query")
    assert client.url() == "ws://a:1/ws/lobby?token=tok"
    client.record({"id": "5-1", "channel": "room:lobby", "type": "message", "data": {}})
    client._rotate()
    assert client.url() == "ws://b:2/ws/lobby?token=tok&since=5-1"
    client.record({"type": "reconnect", "positions": {"room:lobby": "6-0"}})
    assert client.last_id == "6-0"
