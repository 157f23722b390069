"""The REST routes' route class: FastAPI routing, dependencies resolved by plain calls.

FastAPI's per-request dependency solving (validation machinery, caches, exit stacks per
dependency) is built for parameters these endpoints do not take. `PlainCallRoute` keeps
everything else of `APIRoute` (404 and 405, the exception handlers, the OpenAPI document) and
overrides the route's two per-request methods: `handle`, for an endpoint that takes nothing
but the request, string path parameters and dependencies that read the connection
(rest_facade's `Depends` aliases), calls the dependencies in their declared order, then the
endpoint, as FastAPI's handler would; `matches` answers the plain case with one regex match.
Any other endpoint, and any request in an included router's context, gets FastAPI's own
handling. `app.dependency_overrides` do not reach the plain calls.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

_NONE, _PARTIAL, _FULL = Match.NONE, Match.PARTIAL, Match.FULL  # read once, not per request

# (parameter name or None for a declared-only dependency, async callable taking the request)
_Resolver = tuple[str | None, Callable[[Request], Awaitable[Any]]]


def _takes_only_the_connection(dependant: Dependant) -> bool:
    """Nothing FastAPI would have to read, validate or make for it: no query, header, cookie
    or body parameters, no response, background tasks, websocket or security scopes."""
    return not (
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _connection_names(dependant: Dependant) -> list[str]:
    names = (dependant.request_param_name, dependant.http_connection_param_name)
    return [name for name in names if name is not None]


def _plain_dependency(dependency: Dependant) -> bool:
    """An `async def` dependency whose one parameter is the request (or connection)."""
    call = dependency.call
    return (
        call is not None
        and inspect.iscoroutinefunction(call)
        and not dependency.dependencies
        and not dependency.path_params
        and _takes_only_the_connection(dependency)
        and len(_connection_names(dependency)) == len(inspect.signature(call).parameters) == 1
    )


def _returns_a_response(endpoint: Callable[..., Any]) -> bool:
    """Declared to return a Response, which FastAPI would pass on as it is."""
    annotation = get_typed_return_annotation(endpoint)  # as FastAPI reads it
    return inspect.isclass(annotation) and issubclass(annotation, Response)


def _plain_call_plan(route: APIRoute) -> tuple[list[str], list[str], list[_Resolver]] | None:
    """(path parameters, request parameters, dependencies) for a plain call; None when FastAPI
    must solve the endpoint's parameters, shape its return value or limit its body."""
    dependant = route.dependant
    if not (
        getattr(route, "max_body_size", None) is None  # FastAPI wraps the route's app in it
        and inspect.iscoroutinefunction(route.endpoint)
        and _returns_a_response(route.endpoint)
        and _takes_only_the_connection(dependant)
        and all(field.field_info.annotation is str for field in dependant.path_params)
        and all(_plain_dependency(dependency) for dependency in dependant.dependencies)
    ):
        return None
    resolvers: list[_Resolver] = []
    for dependency in dependant.dependencies:
        assert dependency.call is not None
        resolvers.append((dependency.name, dependency.call))
    path_names = [field.name for field in dependant.path_params]
    return path_names, _connection_names(dependant), resolvers


class PlainCallRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # What `handle` needs for the plain call; None: FastAPI serves the route.
        self.plain_call_plan = _plain_call_plan(self)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """`APIRoute.matches`, answered sooner: the router asks every route in turn, and this
        is one of the per-request costs the one path added (FastAPI's checks for an included
        router's context, Starlette's path parameter conversion). For the plain case only: an
        HTTP request without a root path or FastAPI's per-request routing state, a route whose
        path parameters are plain strings; otherwise FastAPI answers.
        tests/test_service_middleware.py compares the two."""
        if (
            scope["type"] != "http"
            or scope.get("root_path")
            or "fastapi" in scope  # FastAPI's routing state (fastapi/routing.py)
            or not self._string_parameters
        ):
            return super().matches(scope)
        found = self.path_regex.match(scope["path"])
        if found is None:
            return _NONE, {}
        path_params = dict(scope.get("path_params", {}))
        path_params.update(found.groupdict())
        child_scope = {"endpoint": self.endpoint, "path_params": path_params, "route": self}
        if self.methods and scope["method"] not in self.methods:
            return _PARTIAL, child_scope
        return _FULL, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The plain call, for a matched method without FastAPI's routing state: the
        dependencies in their declared order, then the endpoint, whose response is sent as it
        is. FastAPI's `request_response` would also open two exit stacks, for dependencies
        with `yield` (a plain call has none), and answer what is raised with the app's
        exception handlers, which Starlette's ExceptionMiddleware outside every route of an
        app (its routes read the handlers it puts in the scope) answers it with too.
        Anything else (an included router's context, a 405): `APIRoute.handle`."""
        plan = self.plain_call_plan
        if (
            plan is None
            or "fastapi" in scope
            or (self.methods and scope["method"] not in self.methods)
        ):
            await super().handle(scope, receive, send)
            return
        path_names, request_names, resolvers = plan
        request = Request(scope, receive, send)
        arguments: dict[str, Any] = {}
        for name, resolve in resolvers:  # first: an invalid token is a 401 before the body
            value = await resolve(request)
            if name is not None:
                arguments[name] = value
        if path_names:
            path_params = scope["path_params"]
            for name in path_names:
                arguments[name] = path_params[name]
        for name in request_names:
            arguments[name] = request
        response: Response = await self.endpoint(**arguments)
        await response(scope, receive, send)

    @functools.cached_property
    def _string_parameters(self) -> bool:
        return all(
            type(convertor) is StringConvertor for convertor in self.param_convertors.values()
        )
