"""The data contract: the pandera schema compiled to one DuckDB query per batch that types the rows and lists each row's failed checks."""
