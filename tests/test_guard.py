"""The transform.filter guard: which expressions pass, and the exact message for each refusal."""

from __future__ import annotations

import pytest

from schemas.errors import SpecError
from schemas.loader import parse_spec
from tasks.transform.guard import MAX_CHARS, filter_error, filter_problems

COLUMNS = ["order_id", "customer", "amount", "status", "updated_at", "email", "note"]
COLUMNS += ["a", "b", "x", "s", "tags", "payload"]

ALLOWED = [
    "status <> 'void'",
    "amount > 10 AND lower(customer) LIKE 'a%'",
    "coalesce(amount, 0) >= 0",
    "status IN ('open','paid')",
    "status NOT IN ('void')",
    "updated_at >= TIMESTAMP '2024-01-01'",
    "amount BETWEEN 1 AND 5",
    "CASE WHEN a THEN 1 ELSE 0 END = 1",
    "regexp_matches(email, '@')",
    "x IS NOT NULL",
    "NOT (a OR b)",
    "length(s) < 5",
    "CAST(amount AS INTEGER) > 1",
    "amount::INTEGER > 1",
    "TRY_CAST(s AS INTEGER) = 1",
    "Status = 'open'",  # DuckDB matches column names case-insensitively
    "customer ILIKE 'a%' OR customer GLOB 'b*' OR customer SIMILAR TO 'c.*'",
    "x IS DISTINCT FROM 1 AND -amount < 0 AND amount % 2 = 0",
    "year(updated_at) = 2024 AND date_trunc('day', updated_at) >= DATE '2024-01-01'",
    "updated_at + INTERVAL 1 DAY > TIMESTAMP '2024-01-01'",
    "strftime(updated_at, '%Y') = '2024'",
    "list_contains(tags, 'vip') AND len(tags) > 0",
    # DuckDB 2 binds only the `lambda` keyword form; `x -> ...` is its JSON operator.
    "list_transform(tags, lambda t: upper(t)) = ['A']",
    "list_filter(tags, lambda t: t <> '') = []",
    "list_reduce(tags, lambda acc, t: acc || t) = 'ab'",
    "payload ->> '$.kind' = 'order'",
    "(payload -> '$.kind') = '\"order\"'",
    "s['field'] = 1",
    "nullif(status, '') IS NOT NULL",  # a macro whose body is plain CASE
    "split_part(email, '@', 2) = 'example.com'",
    "list_sum([amount, 1]) > 1",
    "x COLLATE nocase = 'a'",
    # Literals may hold anything: only comments and ';' outside them are refused.
    "note = 'a--b'",
    "note = 'a/*b*/'",
    "note = 'a;b'",
    "note = $$x -- y$$",
    "\"status\" = 'open'",
    # Casts to the spec's types and plain SQL types, in every spelling.
    "amount::DECIMAL(10,2) > 1 AND TRY_CAST(s AS BIGINT) > 1 AND s::VARCHAR[] = []",
    "CAST(s AS TIMESTAMPTZ) > TIMESTAMP '2024-01-01' AND s::DATE > DATE '2024-01-01'",
    "s::BOOL AND s::DOUBLE > 1 AND s::UUID IS NULL AND s::int64 > 1 AND s::TEXT = ''",
]


@pytest.mark.parametrize("expr", ALLOWED)
def test_allowed(expr: str) -> None:
    assert filter_error(expr, COLUMNS) is None


USE = "use only the row's columns, literals, operators and scalar functions"
ONLY = "only scalar, deterministic functions"
SUBQUERY = f"transform.filter: subqueries are not allowed; {USE}"
COMMENT = "transform.filter: comments (-- or /* */) are not allowed; remove them"
UNBALANCED = (
    "transform.filter: the parentheses do not balance; "
    "the filter must be one self-contained expression"
)
PARAMETER = (
    "transform.filter: parameters ($1, $name, ?) are not allowed; write the value as a literal"
)
ON_COLUMNS = "columns here: " + ", ".join(COLUMNS)


def function(name: str, why: str) -> str:
    return f"transform.filter: function {name} is not allowed ({why}): {ONLY}"


VOLATILE = "its result changes from run to run"
ENVIRONMENT = "it reads the environment, settings or catalog"
FILES = "it reads files, tables or DuckDB's internals"
AGGREGATE = "an aggregate; the filter sees one row at a time"
INVALID = "transform.filter: not a valid SQL expression ({}); write one boolean expression such as status <> 'void'"

REFUSED = [
    # Queries in any form.
    ("(SELECT 1) = 1", SUBQUERY),
    ("x IN (SELECT 1)", SUBQUERY),
    ("EXISTS (SELECT 1)", SUBQUERY),
    ("x = ANY([1, 2])", SUBQUERY),  # DuckDB rewrites ANY(list) into a subquery
    ("list_transform([1], x -> (SELECT 1)) = [1]", SUBQUERY),
    # Files, tables, the environment, settings.
    ("read_csv('/etc/passwd') IS NOT NULL", function("read_csv", FILES)),
    ("READ_CSV('/etc/passwd') IS NOT NULL", function("read_csv", FILES)),
    ("query('select 1') IS NOT NULL", function("query", FILES)),
    ("unnest(tags) = 'a'", function("unnest", "a table function")),
    ("getenv('HOME') = 'x'", function("getenv", ENVIRONMENT)),
    ("current_setting('threads') = '1'", function("current_setting", ENVIRONMENT)),
    ("getvariable('v') = 1", function("getvariable", ENVIRONMENT)),
    ("version() = 'v1'", function("version", ENVIRONMENT)),
    ("list_transform(tags, lambda t: getenv(t)) = []", function("getenv", ENVIRONMENT)),
    # Statements, comments, escaping the parentheses.
    (
        "1; DROP TABLE x",
        "transform.filter: ';' is not allowed: the filter is one expression, not SQL statements",
    ),
    ("status = 'a' -- comment", COMMENT),
    ("/* c */ 1 = 1", COMMENT),
    ("status = 'a' -- comment\n", COMMENT),
    ("1) FROM read_csv('/etc/passwd') --", COMMENT),
    ("1) FROM read_csv('/etc/passwd') WHERE (1", UNBALANCED),
    ("1) UNION SELECT 1 (", UNBALANCED),
    ("1) UNION (SELECT 1", UNBALANCED),
    ("(status = 'a'", UNBALANCED),
    # Nothing that changes between runs.
    ("random() < 0.5", function("random", VOLATILE)),
    ("now() > updated_at", function("now", VOLATILE)),
    ("today() > updated_at", function("today", VOLATILE)),
    ("uuid() IS NOT NULL", function("uuid", VOLATILE)),
    ("nextval('seq') > 1", function("nextval", VOLATILE)),
    ("setseed(0.5) IS NULL", function("setseed", VOLATILE)),
    ("ago(INTERVAL 1 DAY) < updated_at", function("ago", VOLATILE)),
    (
        "current_date - 7 < updated_at",
        "transform.filter: unknown column 'current_date' (the clock and session values are "
        f"not allowed); {ON_COLUMNS}",
    ),
    # One row at a time: no aggregates, no windows.
    ("count(*) > 1", function("count(*)", AGGREGATE)),
    ("sum(amount) FILTER (WHERE amount > 1) > 0", function("sum", AGGREGATE)),
    ("geomean(amount) > 1", function("geomean", "it expands to SQL that is not allowed here")),
    (
        "row_number() OVER () = 1",
        "transform.filter: window functions are not allowed: the filter sees one row at a time",
    ),
    (
        "lower(DISTINCT status) = 'a'",
        "transform.filter: DISTINCT, FILTER and ORDER BY inside a call are for aggregates, "
        "which are not allowed: the filter sees one row at a time",
    ),
    # Names: the row's columns only, by name.
    ("*", "transform.filter: * and COLUMNS(...) are not allowed; name the columns you mean"),
    (
        "COLUMNS('a.*') = 1",
        "transform.filter: * and COLUMNS(...) are not allowed; name the columns you mean",
    ),
    (
        "t.x = 1",
        "transform.filter: qualified name t.x is not allowed; name the row's column alone "
        "(for a struct field write t['x'])",
    ),
    ("#1 = 1", "transform.filter: #N column positions are not allowed; name the column"),
    ("statsu = 'open'", f"transform.filter: unknown column 'statsu'; {ON_COLUMNS}"),
    (
        "main.lower(status) = 'a'",
        "transform.filter: function main.lower is not allowed; call functions by their name alone",
    ),
    (
        "nosuchfn(status)",
        "transform.filter: unknown function nosuchfn; "
        "use DuckDB's built-in scalar, deterministic functions",
    ),
    (
        "list_transform(tags, lower(t) -> 1) = []",
        "transform.filter: the left of '->' must be a name: a column for JSON "
        "(payload -> '$.a') or a lambda parameter (write lambda x: ...)",
    ),
    # Parameters.
    ("$1 = 1", PARAMETER),
    ("?", PARAMETER),
    ("$name = 1", PARAMETER),
    # Not an expression at all.
    (
        "",
        "transform.filter: the expression is empty; "
        "write a boolean expression over the row's columns, e.g. status <> 'void'",
    ),
    (
        "  \n ",
        "transform.filter: the expression is empty; "
        "write a boolean expression over the row's columns, e.g. status <> 'void'",
    ),
    ("status = 'a' AND", INVALID.format('syntax error at or near ")"')),
    (
        "DEFAULT",
        f"transform.filter: default expressions are not allowed; {USE}",
    ),
    (
        "(" * 1100 + "1" + ")" * 1100,
        "transform.filter: the expression is nested too deeply; simplify it",
    ),
    (
        "x = 1 OR " * 500 + "x = 1",
        "transform.filter: the expression is 4505 characters long, "
        f"over the limit of {MAX_CHARS}; simplify it",
    ),
]


@pytest.mark.parametrize(("expr", "message"), REFUSED, ids=[e[:40] for e, _ in REFUSED])
@pytest.mark.reliability(
    "hostile spec",
    "filters with subqueries, table functions, read_csv('/etc/passwd'), getenv, `; DROP`, comments, volatile functions",
    "refused at validate with the reason; nothing runs",
)
def test_refused(expr: str, message: str) -> None:
    assert filter_error(expr, COLUMNS) == message


CASTS = (
    "BOOLEAN, the integers, FLOAT, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, TIME, TIMESTAMP, "
    "TIMESTAMPTZ, INTERVAL, UUID and lists T[] of them"
)


def cast(name: str) -> str:
    return (
        f"transform.filter: type {name} is not allowed in a cast (it may need an extension, "
        f"which a filter cannot load): only {CASTS}; cast to one of those, e.g. CAST(x AS VARCHAR)"
    )


def by_name(name: str) -> str:
    return (
        f"transform.filter: function {name} is not allowed (it calls a function given by name, "
        f"which this check cannot see): {ONLY}; call a list function itself instead, "
        "e.g. list_sum(l) or list_reduce with a lambda"
    )


def unbounded(name: str) -> str:
    return (
        f"transform.filter: function {name} is not allowed (it builds a string or list of any "
        f"size, which one row could fill memory with): {ONLY}; test the row's values as they "
        "are, e.g. starts_with(s, 'ab'), left(s, 3) = 'abc', length(s) > 3, ltrim(code, '0') = '42'"
    )


REFUSED_RED_TEAM = [
    # A type DuckDB does not know made it install and load the extension that has it.
    ("CAST(status AS INET) IS NULL", cast("INET")),
    ("status::INET IS NULL", cast("INET")),
    ("TRY_CAST(status AS INET) IS NULL", cast("INET")),
    ("INET '127.0.0.1' IS NULL", cast("INET")),
    ("TRY_CAST(s AS INET[]) IS NULL", cast("INET")),
    ("status::JSON IS NULL", cast("JSON")),
    ("status::GEOMETRY IS NULL", cast("GEOMETRY")),
    ("status::main.t IS NULL", cast("main.t")),
    ("s::STRUCT(a INT) IS NULL", cast("STRUCT")),
    # A function named by a string is one the guard never sees.
    ("aggregate([1, 2], 'getenv') = 1", by_name("aggregate")),
    ("list_aggregate(tags, 'string_agg') = ''", by_name("list_aggregate")),
    ("list_aggr(tags, 'min') = ''", by_name("list_aggr")),
    ("array_aggregate(tags, 'max') = ''", by_name("array_aggregate")),
    ("to_aggregate_state(1, 'sum', 'INTEGER') IS NULL", by_name("to_aggregate_state")),
    ("finalize(amount) IS NULL", by_name("finalize")),
    # Strings and lists as large as a number: unbounded memory and CPU from one row.
    ("levenshtein(repeat(status, 100000), status) > 1", unbounded("repeat")),
    ("length(repeat(status, 20000000)) > 1", unbounded("repeat")),
    ("lpad(s, 100000000, 'x') = ''", unbounded("lpad")),
    ("rpad(s, 100000000, 'x') = ''", unbounded("rpad")),
    ("len(range(1000000000)) > 1", unbounded("range")),
    ("len(generate_series(1, 1000000000)) > 1", unbounded("generate_series")),
    ("len(list_resize(tags, 1000000000)) > 1", unbounded("list_resize")),
    ("len(array_resize(tags, 1000000000)) > 1", unbounded("array_resize")),
    ("printf('%0100000000d', amount) = ''", unbounded("printf")),
    ("format('{:>100000000}', s) = ''", unbounded("format")),
    ("list_transform(tags, lambda t: repeat(t, 9)) = []", unbounded("repeat")),
    ("string_agg(s, ',') = ''", function("string_agg", AGGREGATE)),
]


@pytest.mark.parametrize(
    ("expr", "message"), REFUSED_RED_TEAM, ids=[e[:40] for e, _ in REFUSED_RED_TEAM]
)
@pytest.mark.reliability(
    "hostile spec",
    "filters that cast to a type from an extension (CAST(status AS INET), status::JSON), call "
    "a function by a name string (aggregate([1,2],'getenv'), list_aggregate, "
    "to_aggregate_state) or build unbounded strings or lists (repeat, lpad, range, "
    "list_resize, printf widths)",
    "refused at validate with the type or function named and the fix; nothing runs",
)
def test_refused_red_team(expr: str, message: str) -> None:
    assert filter_error(expr, COLUMNS) == message


UNKNOWN_COLUMNS = [
    ("statsu = 'open'", None),  # any name may be a column when the columns are not known
    ("lower(customer) LIKE 'a%'", None),
    ("current_date > updated_at", "current_date"),
    ("CURRENT_TIMESTAMP > updated_at", "CURRENT_TIMESTAMP"),
    ("\"user\" = 'x'", "user"),
    ("localtime IS NOT NULL", "localtime"),
]


@pytest.mark.parametrize(("expr", "name"), UNKNOWN_COLUMNS)
def test_unknown_columns(expr: str, name: str | None) -> None:
    expected = None
    if name:
        expected = (
            f"transform.filter: {name} is not allowed: unless the row has a column of that name "
            "DuckDB reads it as the clock or a session value, and the columns are not known here; "
            "declare them (transform.select or a strict inline schema) to use such a column"
        )
    assert filter_error(expr, None) == expected


def test_a_column_may_shadow_a_session_name() -> None:
    assert filter_error("user = 'bob'", ["user"]) is None


def test_the_length_cap_is_inclusive() -> None:
    expr = "note = '" + "a" * (MAX_CHARS - 9) + "'"
    assert len(expr) == MAX_CHARS
    assert filter_error(expr, COLUMNS) is None


SPEC = """\
name: orders
source: {{type: files, url: data/orders.ndjson}}
schema:
  strict: true
  columns:
    order_id: {{type: int64}}
    status: {{type: string}}
transform:
  rename: {{status: state}}
  filter: "{filter}"
sink: {{type: parquet, url: ./warehouse/orders}}
"""


def test_the_loader_names_file_line_and_key() -> None:
    text = SPEC.format(filter="status <> 'void'")
    with pytest.raises(SpecError) as err:
        parse_spec(text, "pumps/orders.yaml", [filter_problems])
    # After the rename the column is `state`; the message does not repeat the key.
    assert err.value.problems == (
        "pumps/orders.yaml:10 transform.filter: unknown column 'status'; columns here: order_id, state",
    )


def test_the_loader_passes_a_good_filter() -> None:
    spec = parse_spec(SPEC.format(filter="state <> 'void'"), "pumps/orders.yaml", [filter_problems])
    assert filter_problems(spec) == []


def test_no_filter_no_problem() -> None:
    text = SPEC.format(filter="x").replace('  filter: "x"\n', "")
    spec = parse_spec(text, "x.yaml", [filter_problems])
    assert filter_problems(spec) == []


@pytest.mark.reliability(
    "hostile spec",
    "a filter that closes its own parentheses to append SQL",
    "refused at validate",
)
def test_a_parse_that_escapes_its_parentheses_is_refused_too() -> None:
    # The lexer's balance check stops this first; the parse check is the second wall.
    from tasks.transform import guard

    with guard._lock:
        problem = guard._parse("1) FROM read_csv('/etc/passwd') WHERE (1")
    assert problem == (
        "must be one expression over the row, not a query (FROM, WHERE, UNION, ...); "
        "use only the row's columns, literals, operators and scalar functions"
    )
