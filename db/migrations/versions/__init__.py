"""Alembic revisions, oldest first by their four-digit ids (`todo-api migrate revision`)."""
