"""Storage: every table declared once (`tables`), the DuckDB file and its transactions (`database`), and
the SQL of each table family (`inputs`, `predictions`, `history`, `reviews`, `versions`).

Nothing outside this package writes SQL against the tables. It builds on `core` and knows nothing of
Dagster; `resources.store` wraps it as a Dagster resource.
"""

from store.database import Database, DatabaseLockedError, DatabaseUnavailableError, Session

__all__ = ["Database", "DatabaseLockedError", "DatabaseUnavailableError", "Session"]
