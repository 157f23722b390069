"""The executor's short paths (graphql_schema/execution.py) answer exactly as graphql-core does.

Each query runs on two schemas built from the same types, one with graphql-core's executor and
one with ours, and the results must be equal: data, and every error's message, path and
locations, in order. The types hold what the short paths must leave to graphql-core: nulls
in non-null fields, values a scalar refuses, attributes that raise or hold awaitables,
enums, objects with `is_type_of`, lists with bad items, fields with resolvers or arguments.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from graphql_schema.execution import Executor
from graphql_schema.schema import build_schema
from graphql_schema.types import DateTimeScalar

WHEN = datetime(2026, 1, 9, 14, 30, 0, 123456, tzinfo=UTC)


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Pet(Named):
    legs: int


class Boom(Exception):
    pass


@strawberry.type
class Leaf:
    text: str
    maybe: str | None
    flag: bool
    count: int
    ratio: float
    when: datetime
    colour: Colour
    ident: strawberry.ID


@strawberry.type
class Node:
    leaf: Leaf
    maybe_leaf: Leaf | None
    leaves: list[Leaf]
    maybe_leaves: list[Leaf | None] | None
    pet: Pet
    named: Named

    @strawberry.field
    def shout(self, word: str = "hey") -> str:
        return word.upper()

    @strawberry.field
    async def later(self) -> Leaf:
        await asyncio.sleep(0)
        return good_leaf()


def good_leaf(**changes: Any) -> Leaf:
    values: dict[str, Any] = {
        "text": "t",
        "maybe": None,
        "flag": True,
        "count": 3,
        "ratio": 0.5,
        "when": WHEN,
        "colour": Colour.RED,
        "ident": strawberry.ID("id-1"),
    }
    values.update(changes)
    return Leaf(**values)


class _Raising(Leaf):
    """A Leaf whose `text` raises when read."""

    def __init__(self) -> None:
        leaf = good_leaf()
        self.__dict__.update(leaf.__dict__)

    @property  # type: ignore[override]
    def text(self) -> str:
        raise Boom("no text")


class _Awaiting(Leaf):
    """A Leaf whose `text` is an awaitable (graphql-core awaits it)."""

    def __init__(self, value: Any) -> None:
        leaf = good_leaf()
        self.__dict__.update(leaf.__dict__)
        self._value = value

    @property  # type: ignore[override]
    def text(self) -> Any:
        async def later() -> Any:
            return self._value

        return later()


def node(**changes: Any) -> Node:
    values: dict[str, Any] = {
        "leaf": good_leaf(),
        "maybe_leaf": None,
        "leaves": [good_leaf(count=i) for i in range(3)],
        "maybe_leaves": [good_leaf(), None],
        "pet": Pet(name="Rex", legs=4),
        "named": Pet(name="Tom", legs=4),
    }
    values.update(changes)
    return Node(**values)


NODES: dict[str, Node] = {
    "good": node(),
    "null text": node(leaf=good_leaf(text=None)),
    "int text": node(leaf=good_leaf(text=7)),
    "object text": node(leaf=good_leaf(text=object())),
    "bool count": node(leaf=good_leaf(count=True)),
    "big count": node(leaf=good_leaf(count=2**40)),
    "float count": node(leaf=good_leaf(count=2.5)),
    "str flag": node(leaf=good_leaf(flag="yes")),
    "naive when": node(leaf=good_leaf(when=datetime(2026, 1, 1))),
    "offset when": node(leaf=good_leaf(when=WHEN.astimezone(timezone(timedelta(hours=2))))),
    "str when": node(leaf=good_leaf(when="2026-01-01")),
    "bad colour": node(leaf=good_leaf(colour="green")),
    "exception value": node(leaf=good_leaf(text=Boom("stored"))),
    "raising attribute": node(leaf=_Raising()),
    "awaitable text": node(leaf=_Awaiting("later")),
    "awaitable null": node(leaf=_Awaiting(None)),
    "null leaf": node(leaf=None),
    "maybe leaf": node(maybe_leaf=good_leaf(maybe="m")),
    "null item": node(leaves=[good_leaf(), None]),
    "bad item": node(leaves=[good_leaf(), good_leaf(text=None)]),
    "maybe items": node(maybe_leaves=[None, good_leaf(text=None), good_leaf()]),
    "not a list": node(leaves=good_leaf()),
    "wrong pet": node(pet=good_leaf()),
    "wrong named": node(named=good_leaf()),
}

LEAF = "{ text maybe flag count ratio when colour ident __typename }"
QUERIES = {
    "leaves": f"{{ node {{ leaf {LEAF} }} }}",
    "nullable": f"{{ node {{ maybeLeaf {LEAF} }} }}",
    "lists": f"{{ node {{ leaves {LEAF} maybeLeaves {LEAF} }} }}",
    "aliases": "{ node { a: leaf { x: text y: text count } b: leaf { text } } }",
    "fragments": """
        { node { leaf { ...L ... on Leaf { flag } } } }
        fragment L on Leaf { text when }
    """,
    "directives": """
        query($yes: Boolean!) { node { leaf { text @include(if: $yes) count @skip(if: $yes) } } }
    """,
    "mixed": f'{{ node {{ shout loud: shout(word: "x") later {LEAF} leaf {{ text }} }} }}',
    "abstract": "{ node { pet { name legs } named { name ... on Pet { legs } } } }",
    "everything": f"""
        {{ node {{ leaf {LEAF} maybeLeaf {LEAF} leaves {LEAF} maybeLeaves {LEAF}
           pet {{ name legs }} named {{ name }} shout later {{ text }} }} }}
    """,
}


def make_schema(*, ours: bool, extensions: list[Any] | None = None) -> strawberry.Schema:
    current: dict[str, Node] = {}

    @strawberry.type
    class Query:
        @strawberry.field
        def node(self) -> Node:
            return current["node"]

        @strawberry.field
        def maybe_node(self) -> Node | None:
            return current["node"]

    schema = strawberry.Schema(
        query=Query,
        types=[Pet],
        extensions=extensions or [],
        execution_context_class=Executor if ours else None,
        config=StrawberryConfig(scalar_map={datetime: DateTimeScalar}),
    )
    schema.current = current  # type: ignore[attr-defined]
    return schema


def outcome(result: Any) -> tuple[Any, list[Any]]:
    return result.data, [error.formatted for error in result.errors or ()]


async def run(schema: strawberry.Schema, data: Node, query: str) -> tuple[Any, list[Any]]:
    schema.current["node"] = data  # type: ignore[attr-defined]
    return outcome(await schema.execute(query, variable_values={"yes": True}))


@pytest.fixture(scope="module")
def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    return make_schema(ours=False), make_schema(ours=True)


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
@pytest.mark.parametrize("data", NODES.values(), ids=NODES.keys())
async def test_same_results_as_graphql_core(
    schemas: tuple[strawberry.Schema, strawberry.Schema], data: Node, query: str
) -> None:
    theirs, ours = schemas
    expected = await run(theirs, data, query)
    assert await run(ours, data, query) == expected


async def test_nullable_parents_catch_the_same_errors(
    schemas: tuple[strawberry.Schema, strawberry.Schema],
) -> None:
    theirs, ours = schemas
    query = f"{{ maybeNode {{ leaf {LEAF} leaves {{ text }} }} }}"
    for data in NODES.values():
        assert await run(ours, data, query) == await run(theirs, data, query)


class CountFields(SchemaExtension):
    """A `resolve` hook: middleware that must see every field."""

    seen: list[str]

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        CountFields.seen.append(info.field_name)
        return _next(root, info, *args, **kwargs)


async def test_middleware_sees_every_field() -> None:
    query = QUERIES["lists"]
    counts = []
    for ours in (False, True):
        CountFields.seen = []
        schema = make_schema(ours=ours, extensions=[CountFields])
        assert (await run(schema, NODES["good"], query))[1] == []
        counts.append(sorted(CountFields.seen))
    assert counts[0] == counts[1]
    assert counts[1].count("text") == 4  # three leaves, one non-null maybe-leaf


def test_the_service_schema_uses_this_executor() -> None:
    assert build_schema().execution_context_class is Executor
