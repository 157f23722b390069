"""The `/api` routes: read the request, call one use case, shape the response. No rules here.

The FastAPI declarations below are the one description of the routes: the OpenAPI document,
404 and 405 answers and the metrics' route labels come from them. Requests for them are served
by `DirectRoutes` (end of file) from `ServiceMiddleware` (api/middleware.py): the same endpoint
functions, called with the services and the caller found by plain function calls, without
FastAPI's per-request routing and dependency solving.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from core.errors import DomainError
from core.service import TodoService
from core.validation import MISSING
from rest_facade.body import read_json_object
from rest_facade.deps import CallerDep, ClientAddressDep, ServiceDep, caller_of, client_address
from rest_facade.errors import HttpError, domain_error_response, error_response
from rest_facade.openapi import (
    CREATE_TASK_BODY,
    LOGIN_BODY,
    SIGNUP_BODY,
    UPDATE_TASK_BODY,
    responses,
)
from rest_facade.serializers import JSON_OPTIONS, auth_json, task_json

router = APIRouter(prefix="/api")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=JSON_OPTIONS),
        status_code=status,
        media_type="application/json",
    )


@router.post(
    "/auth/signup",
    status_code=201,
    summary="Create an account and get a token",
    tags=["auth"],
    openapi_extra=SIGNUP_BODY,
    responses=responses(201, 400, 409, 413, 429, 503),
)
async def signup(request: Request, service: ServiceDep, address: ClientAddressDep) -> Response:
    body = await read_json_object(request)
    result = await service.accounts.signup(
        client_address=address,
        email=body.get("email", MISSING),
        password=body.get("password", MISSING),
    )
    return json_response(auth_json(result), 201)


@router.post(
    "/auth/login",
    summary="Exchange email and password for a token",
    tags=["auth"],
    openapi_extra=LOGIN_BODY,
    responses=responses(200, 400, 401, 413, 429, 503),
)
async def login(request: Request, service: ServiceDep, address: ClientAddressDep) -> Response:
    body = await read_json_object(request)
    result = await service.accounts.login(
        client_address=address,
        email=body.get("email", MISSING),
        password=body.get("password", MISSING),
    )
    return json_response(auth_json(result))


@router.get(
    "/tasks",
    summary="The caller's tasks, newest first",
    tags=["tasks"],
    responses=responses("list", 401, 503),
)
async def list_tasks(service: ServiceDep, caller: CallerDep) -> Response:
    tasks = await service.tasks.list(caller)
    return json_response({"tasks": [task_json(t) for t in tasks]})


@router.post(
    "/tasks",
    status_code=201,
    summary="Create a task",
    tags=["tasks"],
    openapi_extra=CREATE_TASK_BODY,
    responses=responses("task201", 400, 401, 413, 503),
)
async def create_task(request: Request, service: ServiceDep, caller: CallerDep) -> Response:
    body = await read_json_object(request)
    task = await service.tasks.create(
        caller,
        title=body.get("title", MISSING),
        description=body.get("description", MISSING),
    )
    return json_response({"task": task_json(task)}, 201)


@router.get(
    "/tasks/{task_id}",
    summary="One of the caller's tasks",
    tags=["tasks"],
    responses=responses("task", 401, 404, 503),
)
async def get_task(task_id: str, service: ServiceDep, caller: CallerDep) -> Response:
    task = await service.tasks.get(caller, task_id)
    return json_response({"task": task_json(task)})


@router.put(
    "/tasks/{task_id}",
    summary="Change any of title, description, completed",
    tags=["tasks"],
    openapi_extra=UPDATE_TASK_BODY,
    responses=responses("task", 400, 401, 404, 413, 503),
)
async def update_task(
    task_id: str, request: Request, service: ServiceDep, caller: CallerDep
) -> Response:
    body = await read_json_object(request)
    task = await service.tasks.update(caller, task_id, body)
    return json_response({"task": task_json(task)})


@router.delete(
    "/tasks/{task_id}",
    status_code=204,
    summary="Delete a task",
    tags=["tasks"],
    responses=responses(204, 401, 404, 503),
)
async def delete_task(task_id: str, service: ServiceDep, caller: CallerDep) -> Response:
    await service.tasks.delete(caller, task_id)
    return Response(status_code=204)


# --- served directly --------------------------------------------------------------------------

# Each calls its endpoint as FastAPI would, dependencies first: an invalid token is a 401
# before the body is read. (service, scope, receive, the path parameter) -> response.
DirectHandler = Callable[[TodoService, Scope, Receive, str], Awaitable[Response]]


async def _signup(service: TodoService, scope: Scope, receive: Receive, _param: str) -> Response:
    request = Request(scope, receive)
    address = client_address(service, request)
    return await signup(request, service, address)


async def _login(service: TodoService, scope: Scope, receive: Receive, _param: str) -> Response:
    request = Request(scope, receive)
    address = client_address(service, request)
    return await login(request, service, address)


async def _list_tasks(
    service: TodoService, scope: Scope, _receive: Receive, _param: str
) -> Response:
    return await list_tasks(service, caller_of(service, scope))


async def _create_task(
    service: TodoService, scope: Scope, receive: Receive, _param: str
) -> Response:
    caller = caller_of(service, scope)
    return await create_task(Request(scope, receive), service, caller)


async def _get_task(
    service: TodoService, scope: Scope, _receive: Receive, task_id: str
) -> Response:
    return await get_task(task_id, service, caller_of(service, scope))


async def _update_task(
    service: TodoService, scope: Scope, receive: Receive, task_id: str
) -> Response:
    caller = caller_of(service, scope)
    return await update_task(task_id, Request(scope, receive), service, caller)


async def _delete_task(
    service: TodoService, scope: Scope, _receive: Receive, task_id: str
) -> Response:
    return await delete_task(task_id, service, caller_of(service, scope))


_DIRECT: dict[Callable[..., Any], DirectHandler] = {
    signup: _signup,
    login: _login,
    list_tasks: _list_tasks,
    create_task: _create_task,
    get_task: _get_task,
    update_task: _update_task,
    delete_task: _delete_task,
}
_LAST_SEGMENT_PARAMETER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")  # `{task_id}`: any segment


class DirectRoute(NamedTuple):
    template: str
    handler: DirectHandler
    param: str  # the path parameter's value, "" for routes without one


class DirectRoutes:
    """Finds and serves the routes above, for `ServiceMiddleware`.

    The table is built from the FastAPI routes, so a path or method changes in one place; a
    route without a direct handler, or with a path this matcher does not know (a parameter
    before the last segment, a convertor), simply goes through FastAPI. So does every request
    that matches no route here: FastAPI answers those 404 or 405 as before. Errors are answered
    as the exception handlers (rest_facade/errors.py) answer them; anything else propagates to
    ServiceMiddleware's last resort.
    """

    def __init__(
        self,
        service: TodoService,
        routes: Iterable[BaseRoute] = router.routes,
        *,
        extra: Mapping[tuple[str, str], DirectHandler] | None = None,
    ) -> None:
        """`extra`: more handlers by (method, path), for routes declared elsewhere (the app's
        /graphql); they answer every request themselves, errors included."""
        self._service = service
        self._static: dict[tuple[str, str], DirectRoute] = {
            (method, path): DirectRoute(path, handler, "")
            for (method, path), handler in (extra or {}).items()
        }
        self._by_parent: dict[str, dict[str, tuple[str, DirectHandler]]] = {}
        for route in routes:
            if not isinstance(route, APIRoute) or route.endpoint not in _DIRECT:
                continue
            handler = _DIRECT[route.endpoint]
            parent, _, last = route.path.rpartition("/")
            for method in route.methods or ():  # setdefault: the first route wins, as in FastAPI
                if "{" not in route.path:
                    key = (method, route.path)
                    self._static.setdefault(key, DirectRoute(route.path, handler, ""))
                elif "{" not in parent and _LAST_SEGMENT_PARAMETER.fullmatch(last):
                    by_method = self._by_parent.setdefault(parent, {})
                    by_method.setdefault(method, (route.path_format, handler))

    def match(self, method: str, path: str) -> DirectRoute | None:
        """The route for a request (path without its trailing slash), None for FastAPI."""
        found = self._static.get((method, path))
        if found is not None:
            return found
        parent, _, last = path.rpartition("/")
        if last:
            by_method = self._by_parent.get(parent)
            if by_method is not None:
                entry = by_method.get(method)
                if entry is not None:
                    return DirectRoute(entry[0], entry[1], last)
        return None

    async def serve(self, route: DirectRoute, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await route.handler(self._service, scope, receive, route.param)
        except DomainError as exc:
            response = domain_error_response(exc)
        except HttpError as exc:
            response = error_response(exc.status, exc.message)
        await response(scope, receive, send)
