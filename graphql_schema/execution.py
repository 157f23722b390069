"""A graphql-core executor with short paths for plain fields and objects.

A page of 20 tasks is about a hundred fields, most of them leaves such as `Task.title` (an
attribute read and a scalar's `coerce_output_value`) or plain objects such as `TaskEdge.node`.
graphql-core runs each through its general machinery (resolve info, middleware, awaitable
checks, `complete_value`'s dispatch through the wrapping types), which was most of a page's
execution time. The short paths do the same work directly where nothing else can apply:

- In `execute_fields`, a field that is one of Strawberry's basic fields (no resolver, no field
  extensions: Strawberry's own resolver for it is exactly `getattr(source, python_name)`),
  takes no arguments, while no middleware runs (no schema extension has a `resolve` hook).
  The attribute is read once. A leaf whose value is a plain str, bool, int, float or datetime
  that the scalar accepts (or null where null is allowed) is done; so is an object field whose
  value is an object (not null, not awaitable, not an exception) of a type without
  `is_type_of`, whose subfields run at once. Any other value goes on through graphql-core's
  own steps after the resolver (`_resolved_field`), so it yields the same value or error.
- `complete_value` completes an object of a type without `is_type_of` (a list item, a
  resolver's result) by executing its subfields at once, as graphql-core does after its checks
  for exceptions, null and the type's kind.

tests/test_graphql_execution.py runs queries on both executors and compares the results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# Leaf values the short path takes; anything else (an awaitable, an exception, an enum member,
# a custom object) gets graphql-core's own handling.
_PLAIN_VALUES = frozenset({str, bool, int, float, datetime})
# Strawberry's resolver for a field without resolver, permissions or extensions
# (GraphQLCoreConverter.from_resolver): `field.get_result(source, ...)`, that is a getattr.
_BASIC_RESOLVER_NAME = "_get_basic_result"

_LEAF = 0
_OBJECT = 1
# response name -> (kind, attribute, leaf: the scalar's output coercion / object: its type,
# the field, whether null is allowed)
_Short = tuple[int, str, Any, GraphQLField, bool]
_Plan = dict[str, _Short]


def _short_path(
    field_def: GraphQLField | None, field_details_list: FieldDetailsList
) -> _Short | None:
    """How this field can take a short path, if it can."""
    if field_def is None or field_def.args or field_details_list[0].node.arguments:
        return None
    if getattr(field_def.resolve, "__name__", None) != _BASIC_RESOLVER_NAME:
        return None
    field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(field, StrawberryField) or not field.is_basic_field:
        return None
    if field.default_resolver is not getattr:
        return None
    return_type: GraphQLOutputType = field_def.type
    nullable = not isinstance(return_type, GraphQLNonNull)
    named = return_type if nullable else return_type.of_type  # type: ignore[union-attr]
    if is_leaf_type(named):
        return _LEAF, field.python_name, named.coerce_output_value, field_def, nullable  # type: ignore[union-attr]
    if isinstance(named, GraphQLObjectType) and named.is_type_of is None:
        return _OBJECT, field.python_name, named, field_def, nullable
    return None


class Executor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        # Middleware (a `resolve` hook) must see every field: then fields go the general way.
        self._short_fields = middleware is None or not middleware.middlewares
        # id(grouped field set) -> (that set, kept alive so that the id stays its own; plan)
        self._plans: dict[int, tuple[Mapping[str, FieldDetailsList], _Plan]] = {}
        # id(output type) -> the object type to complete directly, or None (types live as
        # long as the schema, which outlives this executor)
        self._direct_objects: dict[int, GraphQLObjectType | None] = {}

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: Mapping[str, FieldDetailsList]
    ) -> _Plan:
        cached = self._plans.get(id(grouped_field_set))
        if cached is not None:
            return cached[1]
        plan: _Plan = {}
        for response_name, field_details_list in grouped_field_set.items():
            field_def = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
            short = _short_path(field_def, field_details_list)
            if short is not None:
                plan[response_name] = short
        self._plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan

    def execute_fields(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Mapping[str, FieldDetailsList],
        position_context: Any,
    ) -> Any:
        """graphql-core's `execute_fields`, with the short paths for plain fields."""
        plan = self._plan(parent_type, grouped_field_set) if self._short_fields else {}
        if not plan:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                short = plan.get(response_name)
                if short is None:
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                    )
                    if result is Undefined:
                        continue
                else:
                    kind, name, how, field_def, nullable = short
                    error: Exception | None = None
                    try:
                        value = getattr(source_value, name)  # the field's resolver
                    except Exception as exc:
                        value, error = None, exc
                    if error is None:
                        if kind == _LEAF:
                            if type(value) in _PLAIN_VALUES:
                                try:
                                    coerced = how(value)
                                except Exception:  # the general way reports it
                                    coerced = None
                                if coerced is not None and coerced is not Undefined:
                                    results[response_name] = coerced
                                    continue
                            elif value is None and nullable:
                                results[response_name] = None
                                continue
                        elif not (
                            value is None or isinstance(value, Exception) or is_awaitable(value)
                        ):
                            result = self._complete_object(
                                how,
                                field_def.type,
                                field_details_list,
                                Path(path, response_name, parent_type.name),
                                value,
                                position_context,
                            )
                            results[response_name] = result
                            if is_awaitable(result):
                                awaitable_fields.append(response_name)
                            continue
                    result = self._resolved_field(
                        parent_type,
                        field_def,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        value,
                        error,
                        position_context,
                    )
                results[response_name] = result
                if is_awaitable(result):
                    awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                # As graphql-core does: settle the other fields' awaitables, they may fail too.
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise

        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited_results = await gather_with_cancel(
                    *(results[field] for field in awaitable_fields)
                )
                results.update(zip(awaitable_fields, awaited_results, strict=True))
            return results

        return get_results()

    def _resolved_field(
        self,
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        error: Exception | None,
        position_context: Any,
    ) -> Any:
        """graphql-core's `execute_field` from the point where the resolver returned `value`
        or raised `error`: the attribute is not read twice."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(field_details_list), parent_type, path)
        try:
            if error is not None:
                raise error
            if self.is_awaitable(value):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, value, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, value, position_context
            )
            if self.is_awaitable(completed):
                return self._await_completed(completed, return_type, field_details_list, path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    def _complete_object(
        self,
        object_type: GraphQLObjectType,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """`execute_field` for a plain object field, after its resolver (a getattr)."""
        try:
            completed = self._subfields(
                object_type, field_details_list, path, value, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._await_completed(completed, return_type, field_details_list, path)
        return completed

    async def _await_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def complete_value(  # type: ignore[override]
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's `complete_value`, objects of plain object types directly."""
        if result is not None and not isinstance(result, Exception):
            key = id(return_type)
            direct = self._direct_objects.get(key, Undefined)
            if direct is Undefined:
                direct = self._direct_object(return_type)
                self._direct_objects[key] = direct
            if direct is not None:
                return self._subfields(
                    direct,  # type: ignore[arg-type]
                    field_details_list,
                    path,
                    result,
                    position_context,
                )
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _subfields(
        self,
        object_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """`collect_and_execute_subfields`, straight to `execute_fields` when nothing is
        deferred (what IncrementalExecutor.execute_collected_subfields does then)."""
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages or position_context is not None:
            return self.execute_collected_subfields(
                object_type, value, path, grouped_field_set, new_defer_usages, position_context
            )
        return self.execute_fields(object_type, value, path, grouped_field_set, None)

    @staticmethod
    def _direct_object(return_type: GraphQLOutputType) -> GraphQLObjectType | None:
        named = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        if isinstance(named, GraphQLObjectType) and named.is_type_of is None:
            return named
        return None
