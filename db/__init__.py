"""Persistence: SQLAlchemy 2 async models, engine and sessions, database URL handling."""
