"""A CSV byte stream cut into blocks of whole decoded lines for csv.reader, remembering enough
of each record's lines to give it its text, first line number and problems."""

from __future__ import annotations

import io
import re
from typing import Any

from tasks.sources.files.stream import CHUNK
from tasks.sources.records import BOM, HEAD_CHARS, NOT_UTF8, decode, drain, head, too_big

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_LINE_BYTES = re.compile(rb"[^\n]*\n|[^\n]+")


class Oversize(Exception):
    """The record in progress outgrew the limit while csv.reader was inside it."""


class CsvBlocks:
    """Cuts a byte stream into blocks of whole decoded lines for csv.reader, which pulls them
    through C iterators: a Python call per line would cost more than the parsing itself.

    Remembers the lines of the record in progress (so each record gets its text and first
    line number), lines that were not UTF-8, and lines over the limit (given to csv.reader
    as empty lines, their head kept aside).
    """

    def __init__(self, stream: io.BufferedReader[Any], limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.lines: list[str] = []  # lines base+1 .. loaded
        self.base = 0  # line number before lines[0]
        self.done = 0  # last line of the last record taken
        self.loaded = 0  # last line handed to csv.reader
        self.bad: set[int] = set()  # numbers of lines that were not UTF-8
        self.big: dict[int, tuple[str, int]] = {}  # number of a line over the limit: head, size

    def next_block(self) -> list[str]:
        """The next lines, [] at the end; Oversize if the record in progress is too long."""
        del self.lines[: self.done - self.base]
        self.base = self.done
        if sum(map(len, self.lines)) > self.limit:
            raise Oversize
        lines = self._read()
        self.lines += lines
        self.loaded += len(lines)
        return lines

    def take(self, end: int, cut: bool = False) -> tuple[int, str, str | None, int]:
        """The record on the lines after the last one taken, up to `end`:
        (first line, text, error, bytes held). `cut`: csv.reader was stopped inside it."""
        start, lines = self.done + 1, self.lines[self.done - self.base : end - self.base]
        self.done = end
        extra, error = 0, None
        if self.big or self.bad:
            lines, extra, error = self._problems(start, lines)
        text = (lines[0] if len(lines) == 1 else "".join(lines)).rstrip("\r\n")
        size = len(text)
        if cut or extra or size * 4 > self.limit:  # chars <= bytes <= 4 x chars
            size = len(text.encode()) + extra
            if cut or size > self.limit:
                return start, head(text), too_big(size, self.limit, cut), HEAD_CHARS
        return start, text, error, size

    def _problems(self, start: int, lines: list[str]) -> tuple[list[str], int, str | None]:
        """The lines with the heads of over-long ones put back, the bytes those heads leave
        out, and NOT_UTF8 if a line was not UTF-8."""
        numbers = range(start, start + len(lines))
        bad = not self.bad.isdisjoint(numbers)
        self.bad.difference_update(numbers)
        out, extra = [], 0
        for n, line in zip(numbers, lines, strict=True):
            if n in self.big:
                first, size = self.big.pop(n)
                out.append(first)
                extra += size - len(first.encode())
            else:
                out.append(line)
        return out, extra, NOT_UTF8 if bad else None

    def _read(self) -> list[str]:
        block = self.stream.read(CHUNK)
        if not self.loaded and block.startswith(BOM):
            block = block[3:]
        if not block:
            return []
        big = None
        if not block.endswith(b"\n"):  # complete the last line, unless it is too long
            tail = self.stream.readline(self.limit + 2)
            if len(tail) < self.limit + 2 or tail.endswith(b"\n"):
                block += tail
            else:
                cut = block.rfind(b"\n") + 1
                big = drain(self.stream.readline, block[cut:] + tail)
                block = block[:cut]
        try:
            lines = _LINE.findall(block.decode("utf-8"))
        except UnicodeDecodeError:
            lines = []
            for i, data in enumerate(_LINE_BYTES.findall(block), self.loaded + 1):
                text, error = decode(data)
                if error:
                    self.bad.add(i)
                lines.append(text)
        # chars <= bytes <= 4 x chars: only lines over a quarter of the limit need a look
        long = lines and max(map(len, lines)) * 4 > self.limit
        for i, line in enumerate(lines if long else ()):
            if len(line) * 4 > self.limit:
                content = line.rstrip("\r\n")
                if len(content.encode()) > self.limit:
                    self.big[self.loaded + i + 1] = (content[:HEAD_CHARS], len(content.encode()))
                    lines[i] = "\n"
        if big:
            first = big[0].decode("utf-8", "replace")[:HEAD_CHARS]
            self.big[self.loaded + len(lines) + 1] = (first, big[1])
            lines.append("\n")
        return lines
