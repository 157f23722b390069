# ruff: noqa: E501  (the scenario table reads best one per line)
"""The scenarios: what the service runs, what the floor runs as its equivalent, how hard."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    service_mode: str  # a mode of bench/lua/scenario.lua
    floor_mode: str  # the floor's REST equivalent (the floor has no GraphQL)
    service_data: str  # a dataset name (see Bench.datasets)
    floor_data: str
    connections: int
    surface: str  # "rest", "graphql", "login"
    timeout: float = 10.0  # wrk's per-request timeout, seconds

    @property
    def is_login(self) -> bool:
        return self.surface == "login"


def _pair(key: str, title: str, s_mode: str, f_mode: str, s_data: str, f_data: str, surface: str):  # type: ignore[no-untyped-def]
    return [
        Scenario(f"{key}_100", title, s_mode, f_mode, s_data, f_data, 100, surface),
        Scenario(f"{key}_10", title, s_mode, f_mode, s_data, f_data, 10, surface),
    ]


SCENARIOS: list[Scenario] = [
    *_pair("rest_list", "REST GET /api/tasks (20 tasks)", "list", "list", "list_tokens", "list_tokens", "rest"),
    *_pair("rest_get", "REST GET /api/tasks/{id}", "get", "get", "list_pairs", "list_pairs", "rest"),
    *_pair("rest_create", "REST POST /api/tasks", "create", "create", "write_tokens", "write_tokens", "rest"),
    *_pair("rest_update", "REST PUT /api/tasks/{id}", "update", "update", "list_pairs", "list_pairs", "rest"),
    *_pair("rest_delete", "REST DELETE /api/tasks/{id}", "delete", "delete", "delete_pool", "delete_pool", "rest"),
    *_pair("gql_tasks", "GraphQL tasks(first: 20) vs floor REST list", "gql_tasks", "list", "list_tokens", "list_tokens", "graphql"),
    *_pair("gql_task", "GraphQL task(id) vs floor REST get", "gql_task", "get", "list_pairs", "list_pairs", "graphql"),
    *_pair("gql_create", "GraphQL createTask vs floor REST create", "gql_create", "create", "write_tokens", "write_tokens", "graphql"),
    *_pair("gql_tasks_10k", "GraphQL tasks(first: 20), one user with 10,000 tasks (floor: REST list, 20 tasks)", "gql_tasks", "list", "big_token", "list_tokens", "graphql"),
    Scenario("login_100", "REST POST /api/auth/login (bcrypt)", "login", "login", "logins", "logins", 100, "login", timeout=120.0),
]  # fmt: skip

BY_KEY = {s.key: s for s in SCENARIOS}

# The non-scenario phases, selectable with --only as well.
UNDER_LOGIN = "list_under_login"
WORKERS = "workers"
PHASES = [UNDER_LOGIN, WORKERS]
