"""Where rows come from, as bounded batches with their lineage.

files: a files source (listing, reading by format); http: the HTTP JSON source (an API's
pages); records: records as text and batches in the making, shared by both; inputs: a run's
inputs (a file or an http source's pages) and their manifest and state JSON.
"""

__all__ = ["files", "http", "inputs", "records"]
