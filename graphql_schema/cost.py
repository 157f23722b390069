"""What an operation may cost, known before it runs: a bound on the fields its result holds.

Every field selected costs 1, once for each object it is selected on; a field that takes a
page size (`first`) multiplies the cost of what it selects by that size, so pages nested in
pages multiply. Aliases and fragments count each time they are used. `first` is read from
the literal, the variable's value, the variable's default or the argument's default, and
taken at least 1 and at most MAX_PAGE_SIZE (a larger value fails on the field, before any
work). Depth, aliases and tokens are bounded by the validation rules; this bounds their
product. The walk is linear in the document: fragment costs are computed once.

Paged fields are known by name (`paged_fields`, from the schema): a field of another type
with the same name and no page argument would be counted as paged, which only overcounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from graphql_schema.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

PAGE_ARGUMENT = "first"


def paged_fields(schema: GraphQLSchema) -> dict[str, int]:
    """Names of the fields that take a page size, with the size they use when none is given."""
    paged: dict[str, int] = {}
    for named_type in schema.type_map.values():
        if not isinstance(named_type, GraphQLObjectType) or named_type.name.startswith("__"):
            continue
        for name, field in named_type.fields.items():
            argument = field.args.get(PAGE_ARGUMENT)
            if argument is not None:
                default = argument.default_value
                paged[name] = default if isinstance(default, int) else DEFAULT_PAGE_SIZE
    return paged


def operation_cost(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    paged: Mapping[str, int],
) -> int:
    """The cost of the operation `operation_name` selects (0 when there is no such one: the
    executor reports that)."""
    operation = None
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
        elif isinstance(definition, OperationDefinitionNode):
            if operation_name is None or (
                definition.name is not None and definition.name.value == operation_name
            ):
                operation = definition
    if operation is None:
        return 0
    return _Cost(operation, fragments, variables or {}, paged).of(operation.selection_set)


class _Cost:
    def __init__(
        self,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        paged: Mapping[str, int],
    ) -> None:
        self._paged = paged
        self._fragments = fragments
        self._fragment_costs: dict[str, int] = {}
        self._variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self._variables and isinstance(definition.default_value, IntValueNode):
                self._variables[name] = int(definition.default_value.value)

    def of(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1 + self._page_size(selection) * self.of(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.of(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value)
        return total

    def _fragment(self, name: str) -> int:
        if name not in self._fragment_costs:
            self._fragment_costs[name] = 0  # validation refuses cycles; this stops one anyway
            fragment = self._fragments.get(name)
            cost = self.of(fragment.selection_set) if fragment is not None else 0
            self._fragment_costs[name] = cost
        return self._fragment_costs[name]

    def _page_size(self, field: FieldNode) -> int:
        default = self._paged.get(field.name.value)
        if default is None:
            return 1
        size: object = default
        for argument in field.arguments or ():
            if argument.name.value != PAGE_ARGUMENT:
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                size = self._variables.get(value.name.value, default)
            else:  # null (the default page) or a value validation refuses
                size = default
        if size is None:
            size = default
        if not isinstance(size, int) or isinstance(size, bool):
            return MAX_PAGE_SIZE  # refused when the field runs; counted at its largest
        return min(max(size, 1), MAX_PAGE_SIZE)
