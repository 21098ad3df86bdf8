"""Where rows land, and `pumphouse query` over what landed.

registry: which sink serves a `sink.type`; load: what the load step hands a sink; parquet,
delta (with delta_storage and its parts _delta_merge, _delta_schema), webhook: one module per
sink; partitions: partition folder names; query: the output as a view.
"""

__all__ = [
    "delta",
    "delta_storage",
    "load",
    "parquet",
    "partitions",
    "query",
    "registry",
    "webhook",
]
