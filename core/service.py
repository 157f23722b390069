"""The rules as the surfaces see them: one object per app, kept as `app.state["todo"]`."""

from __future__ import annotations

from dataclasses import dataclass

from core.accounts import Accounts
from core.events import EventBus
from core.tasks import Tasks


@dataclass(frozen=True, slots=True)
class TodoService:
    accounts: Accounts
    tasks: Tasks
    events: EventBus  # subscriptions to the caller's task events
    # Policies the surfaces apply at their edge.
    trusted_proxies: frozenset[str]
    subscriptions_per_connection: int

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address, believing X-Forwarded-For only when a trusted proxy sent it.

        Walks the header from the right (the entries our own proxies appended) and stops at
        the first address that is not a trusted proxy.
        """
        peer = peer or "unknown"
        if peer not in self.trusted_proxies:
            return peer
        hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in self.trusted_proxies:
                return hop
        return hops[0] if hops else peer
