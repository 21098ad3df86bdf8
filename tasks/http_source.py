"""The HTTP JSON source (`source.type: http`): pages of records as bounded batches."""

from __future__ import annotations

from collections.abc import Iterator

from schemas.errors import NotSupportedYet
from schemas.spec import HttpSource, Limits
from tasks.read import Batch


def read_pages(source: HttpSource, cursor: str | None, limits: Limits) -> Iterator[Batch]:
    """Batches of kind "json" (record text in `_raw`, `_source` = the page URL, `_row` = position)."""
    raise NotSupportedYet(
        "source.type 'http' is valid but not supported by this build yet; use source.type files"
    )
    yield  # pragma: no cover
