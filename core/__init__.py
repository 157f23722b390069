"""The rules: validation, errors, records and the use cases, shared by both surfaces.

Nothing here imports a surface (`rest_facade`, `graphql_schema`) or the app's wiring (`api`);
persistence (`db`) sits below. The layers are checked by import-linter (`make lint`).
"""
