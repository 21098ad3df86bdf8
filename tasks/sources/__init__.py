"""Where rows come from, as bounded batches with their lineage.

files: a files source (listing, reading by format); http: the HTTP JSON source (an API's
pages); records: records as text and batches in the making, shared by both.
"""

__all__ = ["files", "http", "records"]
