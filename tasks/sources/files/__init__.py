"""A files source: the files listed, and each read as bounded Arrow batches.

listing: the files a source names, with fingerprints; read: one file as batches, by format;
stream: a file's bytes (decompressed, capped); json_lines: NDJSON split by DuckDB (the fast
path). The format readers (_csv, _json, _parquet_sizes, ...) are read's parts.
"""

__all__ = ["json_lines", "listing", "read", "stream"]
