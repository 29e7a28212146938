"""The `incidents` command line: `main` is the entry point (see pyproject's scripts)."""
