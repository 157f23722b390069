"""The store behaves alike on both databases, mistakes included (db/store.py).

SQLite runs statements through SQLAlchemy, PostgreSQL through asyncpg; a statement that both
accept must give the same rows, and one that SQLAlchemy refuses must be refused on both: a
bind parameter left without a value used to be sent to PostgreSQL as NULL.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import StatementError

from tests.conftest import serve

ONE_IF_X = sa.select(sa.literal_column("1")).where(sa.bindparam("x") == sa.literal(7))
NULL_IS_NULL = sa.select(sa.literal_column("1")).where(
    sa.cast(sa.bindparam("y", value=None), sa.Integer).is_(None)
)


async def test_a_missing_bind_parameter_is_refused_on_both_databases(app: FastAPI) -> None:
    async with serve(app):
        store = app.state.services.store
        assert [tuple(row) for row in await store.rows(ONE_IF_X, {"x": 7})] == [(1,)]
        assert await store.rows(ONE_IF_X, {"x": 8}) == []
        for params in ({}, None, {"other": 7}):
            with pytest.raises(StatementError, match="bind parameter 'x'"):
                await store.rows(ONE_IF_X, params)
        async with store.transaction() as transaction:
            with pytest.raises(StatementError, match="bind parameter 'x'"):
                await transaction.rows(ONE_IF_X, {})
        # A parameter that carries its own value may still be left out.
        assert [tuple(row) for row in await store.rows(NULL_IS_NULL)] == [(1,)]
