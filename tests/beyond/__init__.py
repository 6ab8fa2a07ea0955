"""End-to-end tests of what we add beyond eHSM-KMS (docs/beyond.md), on SQLite and PostgreSQL."""
