"""Storage: SQLAlchemy 2 models of inspections and API keys, engines for SQLite (WAL) and PostgreSQL, Alembic."""
