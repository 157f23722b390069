"""The `/api` routes: read the request, call one use case, shape the response. No rules here.

FastAPI routes them and answers 404 and 405; their dependencies are resolved by plain calls
(rest_facade/routing.py `PlainCallRoute`), not by FastAPI's dependency solving.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from core.validation import MISSING
from rest_facade.body import read_json_object
from rest_facade.deps import CallerDep, ClientAddressDep, ServiceDep
from rest_facade.openapi import (
    CREATE_TASK_BODY,
    LOGIN_BODY,
    SIGNUP_BODY,
    UPDATE_TASK_BODY,
    responses,
)
from rest_facade.routing import PlainCallRoute
from rest_facade.serializers import JSON_OPTIONS, auth_json, task_json

# The router tries the routes in the order they are declared here: the task routes that serve
# the most requests first, the sign-in routes (a bcrypt hash each) last. The documentation lists
# its sections in the app's `openapi_tags` order, auth first.
router = APIRouter(prefix="/api", route_class=PlainCallRoute)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=JSON_OPTIONS),
        status_code=status,
        media_type="application/json",
    )


@router.get(
    "/tasks",
    summary="The caller's tasks, newest first",
    tags=["tasks"],
    responses=responses("list", 401, 503),
)
async def list_tasks(service: ServiceDep, caller: CallerDep) -> Response:
    tasks = await service.tasks.list(caller)
    return json_response({"tasks": [task_json(t) for t in tasks]})


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
