"""Where a Delta table lives: its URI for deltalake, and the spec's fsspec-style
`storage_options` turned into the keys deltalake (object_store) reads. The one place that maps them.
"""

from __future__ import annotations

import os
from typing import Any

from schemas.loader import resolve_mapping
from schemas.spec import DeltaSink
from tasks.io.files import is_remote

# s3fs (fsspec) option -> deltalake option. Keys already in deltalake's spelling pass through.
_S3_KEYS = {
    "key": "AWS_ACCESS_KEY_ID",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_REGION",
    "region": "AWS_REGION",
    "profile": "AWS_PROFILE",
}
# Options deltalake itself understands, in the lower-case spelling object_store also accepts.
_DELTA_PREFIXES = ("aws_", "azure_", "google_", "delta_", "conditional_put", "allow_http")


def table_uri(sink: DeltaSink) -> str:
    """The table's URI: s3://... as written, a local path made absolute (relative to the cwd)."""
    if is_remote(sink.url):
        return sink.url.rstrip("/")
    path = sink.url.removeprefix("file://")
    return os.path.abspath(path)


def storage_options(sink: DeltaSink) -> dict[str, str]:
    """deltalake's storage options for the sink, secrets resolved (never print the result)."""
    if not is_remote(sink.url):
        return {}
    return delta_options(resolve_mapping(sink.storage_options))


def delta_options(fsspec_options: dict[str, Any]) -> dict[str, str]:
    """fsspec/s3fs options -> deltalake options.

    key/secret/token, endpoint_url and client_kwargs.region_name become AWS_*; an http://
    endpoint also sets AWS_ALLOW_HTTP; `anon: true` skips request signing. Keys already in
    deltalake's own spelling (AWS_*, aws_*) pass through unchanged. Other s3fs-only options
    (use_listings_cache, config_kwargs, ...) matter only to fsspec and are left out.

    Commits: deltalake writes each commit file with a conditional put (If-None-Match), which
    AWS S3 and the usual S3-compatible stores support, so no locking provider is needed; a
    spec that sets AWS_S3_LOCKING_PROVIDER (dynamodb) keeps it.
    """
    out: dict[str, str] = {}
    flat = dict(fsspec_options)
    client = flat.pop("client_kwargs", None) or {}
    for source in (client, flat):  # top-level keys win over client_kwargs
        for k, v in source.items():
            if v is None or isinstance(v, dict | list):
                continue
            if k in _S3_KEYS:
                out[_S3_KEYS[k]] = str(v)
            elif k == "anon":
                if v is True or str(v).lower() == "true":
                    out["AWS_SKIP_SIGNATURE"] = "true"
            elif k == "use_ssl":
                if v is False or str(v).lower() == "false":
                    out["AWS_ALLOW_HTTP"] = "true"
            elif k.isupper() or k.lower().startswith(_DELTA_PREFIXES):
                out[k] = _text(v)
    endpoint = out.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        out.setdefault("AWS_ALLOW_HTTP", "true")
    chosen = {k.lower() for k in out}
    if not chosen & {"aws_s3_locking_provider", "conditional_put", "aws_conditional_put"}:
        out["conditional_put"] = "etag"
    return out


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
