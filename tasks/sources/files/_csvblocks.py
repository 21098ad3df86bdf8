"""A CSV byte stream cut into blocks of whole decoded lines for csv.reader, remembering enough
of each record's lines to give it its text, first line number and problems."""

from __future__ import annotations

import io
import re
from typing import Any

from tasks.sources.files._csvquotes import END, QUOTED, START, Quotes
from tasks.sources.files.stream import CHUNK
from tasks.sources.records import BOM, HEAD_CHARS, NOT_UTF8, decode, drain, head, too_big

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_LINE_BYTES = re.compile(rb"[^\n]*\n|[^\n]+")


# How the error of a record whose quote the file ends inside begins (see is_open).
UNCLOSED = "not valid CSV: the quote opened on line"


def is_open(error: str | None) -> bool:
    """Whether a record's error says the file ended inside its quote: the producer may not
    have finished writing it (a file that grows is read again from its start)."""
    return bool(error) and str(error).startswith(UNCLOSED)


class Unfinished(Exception):
    """csv.reader is inside a quoted field that cannot be read through: the record in
    progress outgrew the limit, or the file ended with the quote open (which csv.reader,
    not strict, would close without a word)."""


class CsvBlocks:
    """Cuts a byte stream into blocks of whole decoded lines for csv.reader, which pulls them
    through C iterators: a Python call per line would cost more than the parsing itself.

    Remembers the lines of the record in progress (so each record gets its text and first
    line number), lines that were not UTF-8, and lines over the limit (given to csv.reader
    as a short stand-in with the same effect on its quotes, their head kept aside). A record
    cut for its size is followed to its true end by its quotes alone (see cut).
    """

    def __init__(self, stream: io.BufferedReader[Any], limit: int, quotes: Quotes) -> None:
        self.stream, self.limit, self.quotes = stream, limit, quotes
        self.lines: list[str] = []  # lines base+1 .. loaded
        self.base = 0  # line number before lines[0]
        self.done = 0  # last line of the last record taken
        self.loaded = 0  # last line handed to csv.reader
        self.bad: set[int] = set()  # numbers of lines that were not UTF-8
        self.big: dict[int, tuple[str, int]] = {}  # number of a line over the limit: head, size
        self.rest = b""  # bytes read past a cut record's end, to read first

    def next_block(self) -> list[str]:
        """The next lines, [] at the end; Unfinished if the record in progress is too long or
        the file ends inside it."""
        del self.lines[: self.done - self.base]
        self.base = self.done
        # csv.reader wants more while a record is in progress only inside a quoted field
        if sum(map(len, self.lines)) > self.limit:
            raise Unfinished
        lines = self._read()
        if not lines and self.done < self.loaded:
            raise Unfinished
        self.lines += lines
        self.loaded += len(lines)
        return lines

    def take(self, end: int) -> tuple[int, str, str | None, int]:
        """The record on the lines after the last one taken, up to `end`:
        (first line, text, error, bytes held)."""
        start, lines = self.done + 1, self.lines[self.done - self.base : end - self.base]
        self.done = end
        extra, error = 0, None
        if self.big or self.bad:
            lines, extra, error = self._problems(start, lines)
        text = (lines[0] if len(lines) == 1 else "".join(lines)).rstrip("\r\n")
        size = len(text)
        if extra or size * 4 > self.limit:  # chars <= bytes <= 4 x chars
            size = len(text.encode()) + extra
            if size > self.limit:
                return start, head(text), too_big(size, self.limit), HEAD_CHARS
        return start, text, error, size

    def cut(self) -> tuple[int, str, str, int]:
        """The record in progress (on Unfinished), read on to its true end without holding
        more of it: the end of the line after which its open quote is closed, or of the file.
        (first line, text, error, bytes held)."""
        start, held = self.done + 1, self.lines[self.done - self.base :]
        data = "".join(held).encode()
        _, _, at = self.quotes.scan(data, START)
        opened = start + data.count(b"\n", 0, at) if at >= 0 else start
        lines, extra, _ = self._problems(start, held)
        text = "".join(lines)
        read, state, at_line, ending = self._skip()
        opened = at_line or opened
        size = len(text.encode()) + extra + read
        size -= ending if read else len(text) - len(text.rstrip("\r\n"))
        self.lines, self.base = [], self.loaded
        self.done = self.loaded
        self.bad = {n for n in self.bad if n > self.done}
        self.big = {n: v for n, v in self.big.items() if n > self.done}
        error = too_big(size, self.limit) if size > self.limit else None
        if state == QUOTED:
            unclosed = (
                f"{UNCLOSED} {opened} is never closed, so the record runs to the end of the file"
            )
            error = f"{unclosed}; {error}" if error else unclosed
        assert error is not None  # cut only for a record over the limit or unclosed
        if size > self.limit:
            return start, head(text), error, HEAD_CHARS
        text = text.rstrip("\r\n")
        return start, text, error, len(text)

    def _skip(self) -> tuple[int, int, int | None, int]:
        """Read on, from inside a quoted field, to the end of the line that closes it (or of
        the file), a block at a time: (bytes read, state there, the line its last quote
        opened on if one did, bytes of the last line's ending)."""
        read, state, opened, tail = 0, QUOTED, None, b""
        while state != END and (block := self._block()):
            state, end, at = self.quotes.scan(block, state)
            if at >= 0:
                opened = self.loaded + block.count(b"\n", 0, at) + 1
            if state == END:  # at the line's \n (or a stray \r: csv.reader fails that line)
                stop = block.find(b"\n", end) + 1 or end + 1
                block, self.rest = block[:stop], block[stop:]
            read += len(block)
            self.loaded += block.count(b"\n")
            tail = (tail + block)[-2:]
        ending = 2 if tail.endswith(b"\r\n") else 1 if tail.endswith(b"\n") else 0
        return read, state, opened, ending

    def _block(self) -> bytes:
        if self.rest:
            block, self.rest = self.rest, b""
            return block
        return self.stream.read(CHUNK)

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
                out.append(first + line[-1:])  # its line's end, if the stand-in has one
                extra += size - len(first.encode())
            else:
                out.append(line)
        return out, extra, NOT_UTF8 if bad else None

    def _read(self) -> list[str]:
        block = self._block()
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
                ends = (START, QUOTED)

                def see(piece: bytes) -> None:
                    nonlocal ends
                    ends = self.quotes.ends(piece, ends)

                big = drain(self.stream.readline, block[cut:] + tail, see)
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
                    lines[i] = self.quotes.stand_in(self.quotes.ends(line.encode()))
        if big:
            first = big[0].decode("utf-8", "replace")[:HEAD_CHARS]
            self.big[self.loaded + len(lines) + 1] = (first, big[1])
            lines.append(self.quotes.stand_in(ends))
        return lines
