"""The values that `${env:NAME}` and `${secret:NAME}` stand for, so that every output can mask them.

The loader registers each value it resolves; the CLI, the flow's logs, artifacts,
run history and errors pass their text through `redact` before anyone sees it.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4  # masking shorter values would garble messages more than it hides

_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_values: set[str] = set()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Treat `value` as a secret from now on, in this process: as it is, and as it reads
    percent-encoded in a URL (`+`, `/`, `=` in a key), where a server may quote it back."""
    if len(value) >= MIN_LENGTH:
        forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
        forms |= {_ESCAPE.sub(lambda m: m.group().lower(), f) for f in forms}  # %2f, too
        with _lock:
            _values.update(forms)


def redact(text: str) -> str:
    """`text` with every remembered secret replaced by ***."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_all(value: Any) -> Any:
    """redact() through dicts, lists and strings."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)
    return value
