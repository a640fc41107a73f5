"""The Alembic environment of the region schema; run through ``regional.storage.migrate``, never imported."""

__all__: list[str] = []
