"""Journey 5: orders → live notifications on the SSE stream → dashboard totals."""

from __future__ import annotations

import httpx

from chorus_client import EventStreamClient, Frame
from chorus_e2e.accounts import sign_up


def order_events(stream: EventStreamClient) -> list[Frame]:
    """The ``order.*`` notifications received (the welcome mail's may come too)."""
    return [e for e in stream.events if e["type"].startswith("order.")]


async def test_orders_notify_live_and_add_up_on_the_dashboard(
    ingress: str, http: httpx.AsyncClient
) -> None:
    buyer = await sign_up(http, "buyer")
    async with EventStreamClient([ingress], buyer.token) as stream:
        await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
        created = []
        for item, quantity, amount in [
            ("keyboard", 1, 4999),
            ("mouse", 2, 2598),
            ("cable", 3, 897),
        ]:
            response = await http.post(
                "/api/orders",
                json={"item": item, "quantity": quantity, "amount_cents": amount},
                headers=buyer.auth,
            )
            assert response.status_code == 201, response.text
            created.append(response.json())
        # Paying is the shop's, not the buyer's: refused, and nothing is published.
        paid = await http.patch(
            f"/api/orders/{created[0]['id']}", json={"status": "paid"}, headers=buyer.auth
        )
        assert paid.status_code == 403
        assert paid.json()["error"]["code"] == "transition_forbidden"
        cancelled = await http.patch(
            f"/api/orders/{created[2]['id']}", json={"status": "cancelled"}, headers=buyer.auth
        )
        assert cancelled.status_code == 200
        await stream.wait_for(lambda: len(order_events(stream)) >= 4, timeout=15)

    events = order_events(stream)
    kinds = [(e["type"], e["data"]["order"]["id"]) for e in events]
    assert kinds == [
        ("order.created", created[0]["id"]),
        ("order.created", created[1]["id"]),
        ("order.created", created[2]["id"]),
        ("order.updated", created[2]["id"]),
    ]
    assert events[3]["data"]["order"]["status"] == "cancelled"
    assert all(e["channel"] == f"user:{buyer.id}" for e in events)

    dashboard = (await http.get("/api/dashboard", headers=buyer.auth)).json()
    assert dashboard["user"]["id"] == buyer.id
    assert dashboard["stats"]["orders"] == 3
    assert dashboard["stats"]["total_spent_cents"] == 4999 + 2598  # cancelled not spent
    notifications = [n["type"] for n in dashboard["notifications"] if n["type"] != "welcome.sent"]
    assert notifications == [
        "order.updated",
        "order.created",
        "order.created",
        "order.created",
    ]

    # Another user sees none of it.
    other = await sign_up(http, "bystander")
    assert (
        await http.get(f"/api/orders/{created[0]['id']}", headers=other.auth)
    ).status_code == 404
    other_dashboard = (await http.get("/api/dashboard", headers=other.auth)).json()
    assert other_dashboard["stats"]["orders"] == 0
