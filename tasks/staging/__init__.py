"""The stage step: each input read, checked against the contract, transformed and staged as
parquet in the run's staging folder.

stage: one input staged; folder: the staging folder, local or at a URL shared by workers;
exact_union: the staged batches read as one table without rounding; kept: a local run's
valid rows kept in its DuckDB instead. _ndjson stages an NDJSON file through DuckDB in blocks.
"""

__all__ = ["exact_union", "folder", "kept", "stage"]
