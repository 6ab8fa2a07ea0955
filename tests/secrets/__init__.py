"""The secret manager (contract section 6): its store methods, its nine actions against live servers on SQLite
and PostgreSQL, concurrent versions across two server processes, and due deletions under an injected clock."""
