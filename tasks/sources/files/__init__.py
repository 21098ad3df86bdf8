"""A files source: the listing, and each file read by format (CSV, JSON, NDJSON, parquet) as bounded batches."""
