"""Split JSON text, fed in chunks, into the text of its top-level values without parsing it:
the elements of one top-level array, or each value of the file."""

from __future__ import annotations

import re

from tasks.sources.records import BOM, HEAD_CHARS

_STRUCTURE = re.compile(rb'["\[\]{},]')


def _nested(inner: bytes) -> bytes:
    return rb"(?:\{(?:" + inner + rb")*+\}|\[(?:" + inner + rb")*+\])"


# The fast path: a whole value (nested up to 4 deep) matched by one regex in C. Possessive
# quantifiers keep a failed match linear; whatever does not match goes through _scan.
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_ATOM = rb'[^"{}\[\]]++|' + _STRING
_CONTAINER = _nested(_ATOM + b"|" + _nested(_ATOM + b"|" + _nested(_ATOM + b"|" + _nested(_ATOM))))
_ELEMENT = re.compile(
    rb"(" + _CONTAINER + b"|" + _STRING + rb'|[^\s,\[\]{}"]++)[ \t\r\n]*+([,\]])', re.S
)
_DOCUMENT = re.compile(_CONTAINER, re.S)
_IN_STRING = re.compile(rb'["\\]')
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_OPEN = {ord("["): ord("]"), ord("{"): ord("}")}
QUOTE, BACKSLASH, COMMA, CLOSE_ARRAY = ord('"'), ord("\\"), ord(","), ord("]")


class JsonSplitter:
    """Splits JSON fed in chunks into the text of its top-level values without parsing them:
    the elements of one top-level array, or else each value of the file (one object, or
    concatenated / newline-delimited objects). Tracks only strings and bracket nesting.

    A structural fault (a stray ',' or bracket, text after the array) turns the rest of the
    file into one value with an error; a value's text is kept only up to `limit` bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.state = "start"  # start | between | value | done | broken
        self.array = False
        self.stack: list[int] = []  # closing bracket expected for each open one
        self.in_string = False
        self.skip = 0  # bytes of the next chunk already consumed (an escape split by a chunk)
        self.parts: list[bytes] = []
        self.size = 0
        self.offset = 0  # bytes before the current chunk
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes, int, str | None]]:
        """The values that end in this chunk: (text or its head if over limit, bytes, error)."""
        out: list[tuple[bytes, int, str | None]] = []
        if self.offset == 0 and chunk.startswith(BOM):
            chunk, self.offset = chunk[3:], 3
        pos, self.skip = self.skip, 0
        start = 0  # where the current value's text begins in this chunk
        n = len(chunk)
        while pos < n:
            if self.state == "value":
                pos, end = self._scan(chunk, pos)
                if end is not None:
                    out.append(self._take(chunk[start:end]))
                continue
            if self.state == "broken":
                break
            m = _NOT_SPACE.search(chunk, pos)
            if m is None:
                break
            pos, c = m.start(), chunk[m.start()]
            if self.state == "start":
                self.state = "between"
                if c == ord("["):
                    self.array = True
                    pos += 1
            elif self.state == "done":
                self._break(f"text after the closing ']' at byte {self.offset + pos}")
                start = pos
            elif self.array and c == CLOSE_ARRAY:
                self.state, pos = "done", pos + 1
            elif c == COMMA:
                self._break(f"unexpected ',' at byte {self.offset + pos}")
                start = pos
            elif m := (_ELEMENT if self.array else _DOCUMENT).match(chunk, pos):
                value = m.group(1) if self.array else m.group()
                out.append(
                    self._take(value) if len(value) > self.limit else (value, len(value), None)
                )
                if self.array and m.group(2) == b"]":
                    self.state = "done"
                pos = m.end()
            else:
                self.state, start = "value", pos
        if self.state in ("value", "broken"):
            self._keep(chunk[start:])
        self.offset += n
        return out

    def end(self) -> list[tuple[bytes, int, str | None]]:
        """The last value at the end of the file, with an error if the JSON was cut short."""
        if self.state == "broken":
            return [self._take(b"")]
        if self.state == "between" and self.array:
            return [
                (b"", 0, "the file ends inside the JSON array (no closing ']'); is it truncated?")
            ]
        if self.state != "value":
            return []
        if self.array or self.stack or self.in_string:
            self.error = "the file ends inside this JSON value; is it truncated?"
        return [self._take(b"")]

    def _scan(self, chunk: bytes, pos: int) -> tuple[int, int | None]:
        """Advance over one token of the current value; (new position, end of value or None)."""
        if self.in_string:
            m = _IN_STRING.search(chunk, pos)
            if m is None:
                return len(chunk), None
            if chunk[m.start()] == BACKSLASH:
                pos = m.start() + 2
                self.skip = max(0, pos - len(chunk))
                return min(pos, len(chunk)), None
            self.in_string = False
            return m.end(), None
        m = _STRUCTURE.search(chunk, pos)
        if m is None:
            return len(chunk), None
        i, c = m.start(), chunk[m.start()]
        if c == QUOTE:
            self.in_string = True
        elif c in _OPEN:
            self.stack.append(_OPEN[c])
        elif self.stack:
            if c == COMMA:
                return i + 1, None
            if self.stack.pop() != c:
                self._break(f"mismatched {chr(c)!r} at byte {self.offset + i}")
                return len(chunk), None
            if not self.stack and not self.array:
                self.state = "between"
                return i + 1, i + 1
        elif self.array and c in (COMMA, CLOSE_ARRAY):
            self.state = "between" if c == COMMA else "done"
            return i + 1, i
        else:
            self._break(f"unexpected {chr(c)!r} at byte {self.offset + i}")
            return len(chunk), None
        return i + 1, None

    def _break(self, where: str) -> None:
        kind = "JSON array" if self.array else "JSON"
        self.error = f"not a valid {kind}: {where}; the rest of the file is kept as this one record"
        self.state = "broken"

    def _keep(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size <= self.limit:
            self.parts.append(piece)
        elif len(self.parts) != 1 or len(self.parts[0]) != 4 * HEAD_CHARS:
            # Over the limit: keep only a head to show, count the rest.
            self.parts = [b"".join([*self.parts, piece])[: 4 * HEAD_CHARS]]

    def _take(self, piece: bytes) -> tuple[bytes, int, str | None]:
        self._keep(piece)
        data = b"".join(self.parts).strip()
        size = self.size if self.size > self.limit else len(data)
        out = (data, size, self.error)
        self.parts, self.size, self.error = [], 0, None
        return out
