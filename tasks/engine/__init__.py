"""The one door to DuckDB: connections, SQL text helpers, one DuckDB shared by a process."""
