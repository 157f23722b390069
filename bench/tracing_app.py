"""`bench.tracing_app:app`: the service with tracing on and a span per resolver as well.

For bench/tracing.py only (not a product setting): what keeping Strawberry's per-resolver
spans would cost. The operation span is the service's (`api.tracing.OperationSpan`); its
`resolve` is Strawberry's again, with an argument filter that records no value. Needs the
OTEL_* variables that turn tracing on.
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions.tracing import OpenTelemetryExtension

from api import tracing


class WithResolverSpans(tracing.OperationSpan):
    resolve = OpenTelemetryExtension.resolve

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(arg_filter=lambda _args, _info: {}, **kwargs)


tracing.Tracing.graphql_extensions = (WithResolverSpans,)

from api.main import app  # noqa: E402  (after the patch: create_app builds the schema)

__all__ = ["app"]
