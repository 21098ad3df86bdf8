"""The pure work of a run, one package per stage of the pipeline, in the order a run meets them:

validate  what `pumphouse validate` checks beyond the spec
run       one run's course: plan, load, the steps as Prefect tasks, summary, deadline
sources   where rows come from: files (listed, read by format) and HTTP APIs
contract  the pandera contract compiled to one DuckDB query per batch
transform select, rename, filter (and its guard), incremental window, dedup
staging   the stage step: each input checked, transformed and staged as parquet
sinks     where rows land: parquet, Delta, a webhook; `pumphouse query`
state     what a pump keeps between runs: mark, files read, manifest, lock
engine    the one door to DuckDB
io        disks, buckets and HTTP servers, and their failures as pumphouse errors

`internal` names pumphouse's own columns. A package's public modules are in its `__all__`;
a module named `_x` is its package's own part, imported from nowhere else (tests/test_layout.py).
"""
