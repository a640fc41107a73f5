"""The region database: engines and the whole-transaction retry, schema migrations, and the audit's SQL."""

__all__ = ["audit_sql", "db", "migrate"]
