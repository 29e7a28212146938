"""What metrics can be grouped by: the one list, for the queries, the API and the CLI.

Pure (no DuckDB), so the command line can import it without loading the read-model stack.
"""

import enum


class GroupBy(enum.StrEnum):
    SEVERITY = "severity"
    SERVICE = "service"
    CATEGORY = "category"
    MONTH = "month"
    REGION = "region"
