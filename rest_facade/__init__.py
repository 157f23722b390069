"""The REST compatibility facade: the contracted `/api/...` endpoints over the use cases (core/)."""
