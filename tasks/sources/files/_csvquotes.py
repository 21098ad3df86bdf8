"""Where a CSV record stands after some of its bytes, as csv.reader reads it (strict=False,
doubled quotes): so that a record can be followed to its true end without holding it."""

from __future__ import annotations

import re

# States, as csv.reader's: at a field's start, in an unquoted field, in a quoted field,
# just after a quote in a quoted field (closing it, or the first of a doubled pair), and
# past the record's end.
START, FIELD, QUOTED, AFTER, END = range(5)


class Quotes:
    """The quote grammar of one CSV dialect, run over bytes with find() rather than per byte.

    UTF-8 never puts an ASCII byte inside a longer character, so bytes (even cut mid-character
    or not UTF-8 at all) are read like the text csv.reader gets.
    """

    def __init__(self, delimiter: str, quote: str) -> None:
        self.quote, self.delimiter = quote.encode(), delimiter.encode()
        self._stop = re.compile(re.escape(self.delimiter) + rb"|[\r\n]")  # ends unquoted text
        filler = next(c for c in "xyz" if c not in (quote, delimiter))
        # One short line per (opens a quote from a field's start, stays open from a quoted
        # field), that csv.reader reads as it would read the over-long line it stands in for.
        self._stand_ins = {
            (False, True): "\n",
            (True, False): quote + "\n",
            (False, False): filler + quote + "\n",
            (True, True): quote + filler + quote + filler + delimiter + quote + "\n",
        }

    def scan(self, data: bytes, state: int) -> tuple[int, int, int]:
        """(the state after `data`, where the record ended in it or len(data), where in it
        the last quote opened or -1)."""
        i, n, opened, q = 0, len(data), -1, self.quote
        while i < n and state != END:
            if state == QUOTED:
                j = data.find(q, i)
                if j < 0:
                    return QUOTED, n, opened
                state, i = AFTER, j + len(q)
            elif state == FIELD:
                m = self._stop.search(data, i)
                if m is None:
                    return FIELD, n, opened
                state, i = (END, m.start()) if m.group() in (b"\r", b"\n") else (START, m.end())
            elif data.startswith(q, i):  # opens a field, or doubles a quote
                if state == START:
                    opened = i
                state, i = QUOTED, i + len(q)
            elif data[i] in b"\r\n":
                state = END
            elif data.startswith(self.delimiter, i):
                state, i = START, i + len(self.delimiter)
            else:
                state = FIELD
        return state, min(i, n), opened

    def stand_in(self, ends: tuple[int, int]) -> str:
        """A short line csv.reader reads as it would an over-long one that leaves `ends`
        (the states after it from a field's start and from a quoted field; see ends)."""
        return self._stand_ins[(ends[0] == QUOTED, ends[1] == QUOTED)]

    def ends(self, data: bytes, states: tuple[int, int] = (START, QUOTED)) -> tuple[int, int]:
        """The states after `data` from each of `states` (a line read in pieces: from the
        states the pieces before left)."""
        return self.scan(data, states[0])[0], self.scan(data, states[1])[0]
