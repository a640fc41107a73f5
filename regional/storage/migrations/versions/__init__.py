"""The region schema's revisions in order (r0001…); Alembic loads them by path."""

__all__: list[str] = []
