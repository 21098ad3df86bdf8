"""Disks, buckets and HTTP servers under a run: small files by name, the HTTP client, and their failures as pumphouse errors."""
