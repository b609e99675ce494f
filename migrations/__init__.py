"""Alembic environment of the journal (shipped as pexen.migrations)."""
