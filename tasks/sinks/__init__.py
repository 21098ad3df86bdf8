"""Where rows land: parquet, Delta, a webhook; which sink serves a sink.type; `pumphouse query` over the output."""
