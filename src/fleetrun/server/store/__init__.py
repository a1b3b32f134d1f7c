"""Storage: tables, queries (one module per resource) and migrations."""
