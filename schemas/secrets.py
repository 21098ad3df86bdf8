"""The values that `${env:NAME}` and `${secret:NAME}` stand for, so that every output can mask them.

The loader registers each value it resolves, and what each resolved text was written as; the
CLI, the flow's logs, artifacts, run history and errors pass their text through `redact`
before anyone sees it, and what is stored (a source file's URL) keeps the reference as the
spec writes it (`written`), to be resolved again only when it is used.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
MIN_LENGTH = 4  # masking shorter values would garble messages more than it hides

_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_values: set[str] = set()
# A text resolved from the spec -> {a value in it: the `${...}` reference that stands for it}.
_written: dict[str, dict[str, str]] = {}
_lock = threading.Lock()


def remember(value: str) -> None:
    """Treat `value` as a secret from now on, in this process, in every form it may take on
    the way out (see `forms`)."""
    if len(value) >= MIN_LENGTH:
        with _lock:
            _values.update(forms(value))


def remember_written(resolved: str, references: dict[str, str]) -> None:
    """What the spec wrote for `resolved`: each value in it and the reference that stood
    for it (`{value: "${env:NAME}"}`), so that `written` can put them back."""
    swaps = {v: r for v, r in references.items() if len(v) >= MIN_LENGTH}
    if swaps:
        with _lock:
            _written[resolved] = swaps


def remember_credentials(url: str) -> None:
    """The `user:password@` of a URL as HTTP Basic auth sends it (base64 of `user:password`,
    which no form of the password alone matches), so that a server echoing the
    Authorization header back is masked too."""
    if "://" not in url or "@" not in url:
        return
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    if not password:
        return
    for pair in {f"{user or ''}:{password}", f"{unquote(user or '')}:{unquote(password)}"}:
        for encoding in ("utf-8", "latin-1"):  # httpx sends UTF-8, aiohttp Latin-1
            try:
                remember(base64.b64encode(pair.encode(encoding)).decode())
            except UnicodeEncodeError:
                continue


def forms(value: str) -> set[str]:
    """`value` as it is, percent-encoded in a URL (`+`, `/`, `=` in a key), where a server may
    quote it back, and escaped as repr() and JSON print it (a `\\`, a quote, a non-ASCII char)."""
    found = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    found |= {_ESCAPE.sub(lambda m: m.group().lower(), f) for f in found}  # %2f, too
    found |= {repr(value)[1:-1], ascii(value)[1:-1], json.dumps(value)[1:-1]}
    found.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {f for f in found if len(f) >= MIN_LENGTH}


def redact(text: str) -> str:
    """`text` with every remembered secret replaced by ***."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def written(text: str, within: str) -> str:
    """`text` (a URL found under `within`, a URL resolved from the spec) as it may be stored:
    each value of a reference `within` was written with put back as that reference, so
    that resolving it again at use gives `text`; a secret left in another form masked.
    Only `within`'s own references: what another spec names must not change these keys."""
    with _lock:
        swaps = dict(_written.get(within, {}))
    if swaps:  # in one pass: a reference put back is not searched again
        values = "|".join(re.escape(v) for v in sorted(swaps, key=len, reverse=True))
        text = re.sub(values, lambda m: swaps[m.group()], text)
    return redact(text)


def redact_all(value: Any) -> Any:
    """redact() through dicts, lists and strings."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)
    return value
