"""The first rows of a few files of a files source, read by DuckDB's sniffer: the format and
compression, a CSV's dialect, and the rows as a DuckDB table for `profile`.

Only the first `rows` rows of at most MAX_FILES files are read, so a big source is sampled
in seconds; DuckDB reads the files where they are (local, or through fsspec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsspec.core import url_to_fs

from schemas.errors import UsageError
from schemas.spec import FilesSource, source_format
from tasks.engine import db
from tasks.sources.files.listing import SourceFile, list_files, safe_url
from tasks.sources.files.stream import decompressed, sniffed

MAX_FILES = 3
HEAD = 1 << 16  # bytes looked at to tell a file's format
NULLS = ("", "NA")  # the spec's default csv.null_values
TABLE = "sample"


@dataclass
class FileSample:
    """What a files source's sample says: the source section's keys, and where it came from."""

    source: dict[str, Any]
    rows: int
    files_listed: int
    files_read: int
    formats: dict[str, str | None] = field(default_factory=dict)  # for profile()


def sample_files(con: db.Connection, url: str, rows: int) -> FileSample:
    """Read the first `rows` rows of the first files `url` names into the table `sample`."""
    files = _listed(url)
    first = files[0]
    fmt, codec = _kind(first)
    chosen = [f for f in files if _suffix(f.url) == _suffix(first.url)][:MAX_FILES]
    source: dict[str, Any] = {"type": "files", "url": url}
    if len({_suffix(f.url) for f in files}) > 1 and _suffix(first.url):
        source["glob"] = f"**/*{_suffix(first.url)}"  # only the files like the first
    source["format"] = fmt
    if codec != "none":
        source["compression"] = codec
    paths = [f.url for f in chosen]
    _register(con, first.url)
    formats: dict[str, str | None] = {}
    if fmt == "csv":
        reader, source["csv"], formats = _csv(con, paths, codec, rows)
    elif fmt == "parquet":
        reader = f"read_parquet({_list(paths)}, union_by_name = true)"
    else:
        shape = "newline_delimited" if fmt == "ndjson" else "auto"
        reader = (
            f"read_json({_list(paths)}, format = '{shape}', union_by_name = true, "
            f"compression = '{_duck_codec(codec)}', sample_size = {int(rows)}, "
            "ignore_errors = true)"  # a bad line is the run's to reject, not the sample's end
        )
    db.execute(con, "SET preserve_insertion_order = true")  # the first rows, not any rows
    try:
        db.execute(con, f"CREATE TABLE {TABLE} AS SELECT * FROM {reader} LIMIT {int(rows)}")
    except db.Error as e:
        raise UsageError(
            f"{safe_url(first.url)}: DuckDB cannot read it as {fmt} ({_first_line(e)}); "
            "is it a whole, valid file?"
        ) from None
    # A line DuckDB skipped (ignore_errors) comes back as a row of NULLs: not a sampled row.
    names = [db.ident(n) for n, _ in db.column_types(con, f"SELECT * FROM {TABLE}")]
    if names:
        db.execute(con, f"DELETE FROM {TABLE} WHERE " + " AND ".join(f"{n} IS NULL" for n in names))
    read = int(db.scalar(con, f"SELECT count(*) FROM {TABLE}"))
    if read == 0 and any(f.size for f in chosen):  # nothing DuckDB could read: not this format
        raise UsageError(
            f"{safe_url(first.url)}: DuckDB reads no row of it as {fmt}; is it a whole, valid file?"
        )
    return FileSample(source, read, len(files), len(chosen), formats)


def _listed(url: str) -> list[SourceFile]:
    try:
        files = list_files(FilesSource(type="files", url=url))
    except FileNotFoundError:
        files = []
    if not files:
        raise UsageError(
            f"{safe_url(url)}: no files there; give a folder, file or glob that holds "
            "csv, json, ndjson or parquet files"
        )
    return files


def _suffix(url: str) -> str:
    """The file name's extensions (`.csv.gz`), lowercased."""
    name = url.rsplit("/", 1)[-1].lower()
    parts = name.split(".")[1:]
    return "".join(f".{p}" for p in parts[-2:]) if parts else ""


def _kind(file: SourceFile) -> tuple[str, str]:
    """The file's format and codec: from its name where it says, else from its first bytes."""
    fs, path = url_to_fs(file.url)
    with fs.open(path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        codec, raw = sniffed(raw)
        head = b"" if magic == b"PAR1" else decompressed(raw, codec, file).read(HEAD)
    named = source_format(FilesSource(type="files", url=file.url))
    if magic == b"PAR1":
        return "parquet", "none"
    if b"\0" in head:
        raise UsageError(
            f"{safe_url(file.url)}: binary content, not csv, json, ndjson or parquet; "
            "give the files' folder or a glob that names only data files"
        )
    if named:
        return named, codec
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json", codec
    if text.startswith(b"{"):
        line = text.split(b"\n", 1)[0].strip()
        return ("ndjson" if line.endswith(b"}") else "json"), codec
    return "csv", codec


def _csv(
    con: db.Connection, paths: list[str], codec: str, rows: int
) -> tuple[str, dict[str, Any], dict[str, str | None]]:
    """The reader of the sample, the `csv` section, the date and time formats found."""
    nulls = db.texts(NULLS)
    found = db.rows(
        con,
        f"SELECT Delimiter, Quote, HasHeader, DateFormat, TimestampFormat FROM sniff_csv("
        f"{db.quote(paths[0])}, nullstr = {nulls}, sample_size = {int(rows)}, "
        f"compression = '{_duck_codec(codec)}')",
    )[0]
    delimiter, quote, header, date_format, ts_format = found
    quote = '"' if quote in (None, "", "(empty)") else quote
    options: dict[str, Any] = {"delimiter": delimiter, "header": bool(header)}
    options |= {"quote": quote, "null_values": list(NULLS)}
    parts = [
        f"delim = {db.quote(delimiter)}", f"quote = {db.quote(quote)}",
        f"header = {str(bool(header)).lower()}", f"nullstr = {nulls}",
        f"sample_size = {int(rows)}", f"compression = '{_duck_codec(codec)}'",
        "union_by_name = true", "ignore_errors = true",
    ]  # fmt: skip
    if date_format:
        parts.append(f"dateformat = {db.quote(date_format)}")
    if ts_format:
        parts.append(f"timestampformat = {db.quote(ts_format)}")
    reader = f"read_csv({_list(paths)}, {', '.join(parts)})"
    return reader, options, {"DATE": date_format, "TIMESTAMP": ts_format}


def _duck_codec(codec: str) -> str:
    return {"gzip": "gzip", "zstd": "zstd"}.get(codec, "none")


def _list(paths: list[str]) -> str:
    return db.texts(db.literal_glob(p) for p in paths)


def _register(con: db.Connection, url: str) -> None:
    if "://" in url and not url.startswith("file://"):
        fs, _ = url_to_fs(url)
        db.register_fs(con, fs)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
