"""What `pumphouse init` infers from a sample of a source, for a spec to start from.

files: the first rows of a few files (format, compression, CSV dialect) read by DuckDB's
sniffer; api: the first pages of a JSON API (where the records are, how it pages);
profile: each column of a sample (type, date format, NULLs, distinct values, least value);
propose: what a data engineer would pick from that (a key, a cursor, checks);
sample: all of it for one source (a folder, bucket, file or API), as `init` writes it.
"""

__all__ = ["api", "files", "profile", "propose", "sample"]
