"""Disks, buckets and HTTP servers under a run, and their failures as pumphouse errors.

files: small files by name in a local folder or a bucket URL; http: the one HTTP client (rate,
retries, safe URLs); storage: storage failures (S3, fsspec); failures: the machine's (a full
disk, no memory, a path too long).
"""

__all__ = ["failures", "files", "http", "storage"]
