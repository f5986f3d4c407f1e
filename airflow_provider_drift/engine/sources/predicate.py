"""Translate a SQL WHERE expression into a pyarrow compute expression for Arrow and Parquet sources.

Delta tables use DataFusion's full SQL; in-memory frames and Parquet files
have no SQL engine here (no DuckDB/DataFusion wheel), so this covers the
subset a templated Airflow filter needs: comparisons, ``AND``/``OR``/``NOT``,
``[NOT] IN``, ``[NOT] BETWEEN``, ``IS [NOT] NULL``, ``[NOT] LIKE``/``ILIKE``,
and string/number/boolean/``DATE``/``TIMESTAMP`` literals. String literals
compared with a column are cast to the column's type the way DataFusion does
(``updated_at >= '2026-01-01'`` works on a timestamp column; a literal
without an offset is taken as UTC). Null semantics are SQL's: a row whose
predicate is NULL is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError

SUPPORTED = (
    "comparisons (= != <> < <= > >=), AND, OR, NOT, parentheses, [NOT] IN (...), [NOT] BETWEEN a AND b, "
    "IS [NOT] NULL, [NOT] LIKE / ILIKE 'pattern', and literals ('text', 42, 1.5, TRUE, FALSE, NULL, "
    "DATE '2026-01-01', TIMESTAMP '2026-01-01 10:00:00')"
)

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")*"|`(?:[^`]|``)*`)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,|-)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE", "ILIKE", "TRUE", "FALSE"}
_COMPARE = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class Predicate:
    """A parsed filter: the Arrow expression and the columns it reads."""

    sql: str
    expression: pc.Expression
    columns: frozenset[str]


@dataclass(frozen=True)
class _Field:
    name: str
    type: pa.DataType


@dataclass(frozen=True)
class _Literal:
    value: Any  # Python value; None is SQL NULL
    type: pa.DataType | None = None  # set for DATE/TIMESTAMP literals


_Operand: TypeAlias = "_Field | _Literal | pc.Expression"


class _FilterSyntaxError(Exception):
    pass


def parse_predicate(sql: str, schema: pa.Schema) -> Predicate:
    """Parse ``sql`` against ``schema``; raise SourceError naming the filter if it cannot be used."""
    parser = _Parser(sql, schema)
    try:
        result = parser.parse()
    except _FilterSyntaxError as exc:
        raise SourceError(
            f"invalid filter {sql!r}: {exc}",
            hint=f"filters on Arrow, pandas and Parquet sources support {SUPPORTED}",
            filter=sql,
        ) from None
    return Predicate(sql=sql, expression=result, columns=frozenset(parser.columns))


class _Parser:
    def __init__(self, sql: str, schema: pa.Schema) -> None:
        self.sql = sql
        self.schema = schema
        self.columns: set[str] = set()
        self.tokens = _tokenize(sql)
        self.pos = 0

    # -- token helpers -------------------------------------------------
    def _peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def _is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self._peek(offset)
        return tok is not None and tok[0] == "id" and tok[1].upper() == word

    def _accept_kw(self, word: str) -> bool:
        if self._is_kw(word):
            self.pos += 1
            return True
        return False

    def _expect_op(self, op: str) -> None:
        tok = self._peek()
        if tok != ("op", op):
            raise _FilterSyntaxError(f"expected {op!r} but found {_describe(tok)}")
        self.pos += 1

    # -- grammar ---------------------------------------------------------
    def parse(self) -> pc.Expression:
        if not self.tokens:
            raise _FilterSyntaxError("the filter is empty")
        expr = self._or()
        if self._peek() is not None:
            raise _FilterSyntaxError(f"unexpected {_describe(self._peek())}")
        return _as_boolean(expr)

    def _or(self) -> _Operand:
        left = self._and()
        while self._accept_kw("OR"):
            left = _as_boolean(left) | _as_boolean(self._and())
        return left

    def _and(self) -> _Operand:
        left = self._not()
        while self._accept_kw("AND"):
            left = _as_boolean(left) & _as_boolean(self._not())
        return left

    def _not(self) -> _Operand:
        if self._accept_kw("NOT"):
            return ~_as_boolean(self._not())
        return self._predicate()

    def _predicate(self) -> _Operand:
        left = self._operand()
        tok = self._peek()
        if tok is not None and tok[0] == "op" and tok[1] in _COMPARE:
            self.pos += 1
            return _compare(tok[1], left, self._operand())
        if self._accept_kw("IS"):
            negate = self._accept_kw("NOT")
            if not self._accept_kw("NULL"):
                raise _FilterSyntaxError(f"expected NULL after IS but found {_describe(self._peek())}")
            expr = _expr(left)
            return expr.is_valid() if negate else expr.is_null()
        negate = False
        if self._is_kw("NOT") and any(self._is_kw(w, 1) for w in ("IN", "BETWEEN", "LIKE", "ILIKE")):
            self.pos += 1
            negate = True
        if self._accept_kw("IN"):
            return self._in(left, negate)
        if self._accept_kw("BETWEEN"):
            low = self._operand()
            if not self._accept_kw("AND"):
                raise _FilterSyntaxError("expected AND in BETWEEN")
            high = self._operand()
            expr = _compare(">=", left, low) & _compare("<=", left, high)
            return ~expr if negate else expr
        for word in ("LIKE", "ILIKE"):
            if self._accept_kw(word):
                pattern = self._operand()
                if not isinstance(pattern, _Literal) or not isinstance(pattern.value, str):
                    raise _FilterSyntaxError(f"{word} needs a quoted pattern")
                expr = pc.match_like(_expr(left), pattern=pattern.value, ignore_case=word == "ILIKE")
                return ~expr if negate else expr
        return left

    def _in(self, left: _Operand, negate: bool) -> pc.Expression:
        if not isinstance(left, _Field):
            raise _FilterSyntaxError("IN needs a column on its left")
        self._expect_op("(")
        values: list[Any] = []
        while True:
            item = self._operand()
            if not isinstance(item, _Literal):
                raise _FilterSyntaxError("IN lists may hold only literals")
            values.append(_coerce(item, left.type))
            if self._peek() == ("op", ","):
                self.pos += 1
                continue
            self._expect_op(")")
            break
        field = pc.field(left.name)
        matches = field.isin(pa.array([v for v in values if v is not None], type=left.type))
        # SQL: x NOT IN (...) is NULL when x is NULL, so the row is dropped.
        return (~matches & field.is_valid()) if negate else matches

    def _operand(self) -> _Operand:
        tok = self._peek()
        if tok is None:
            raise _FilterSyntaxError("the filter ends too early")
        kind, text = tok
        self.pos += 1
        if kind == "op" and text == "(":
            inner = self._or()
            self._expect_op(")")
            return inner
        if kind == "op" and text == "-":
            nxt = self._peek()
            if nxt is None or nxt[0] != "num":
                raise _FilterSyntaxError("'-' must be followed by a number")
            self.pos += 1
            return _Literal(-_number(nxt[1]))
        if kind == "num":
            return _Literal(_number(text))
        if kind == "str":
            return _Literal(text[1:-1].replace("''", "'"))
        if kind == "qid":
            return self._field(text[1:-1].replace(text[0] * 2, text[0]))
        if kind == "id":
            word = text.upper()
            if word in ("TRUE", "FALSE"):
                return _Literal(word == "TRUE")
            if word == "NULL":
                return _Literal(None)
            if word in ("DATE", "TIMESTAMP") and self._peek() is not None and self._peek()[0] == "str":  # type: ignore[index]
                raw = self.tokens[self.pos][1][1:-1]
                self.pos += 1
                return _typed_literal(word, raw)
            if word in _KEYWORDS:
                raise _FilterSyntaxError(f"unexpected keyword {text}")
            if self._peek() == ("op", "("):
                raise _FilterSyntaxError(f"functions such as {text}() are not supported")
            return self._field(text)
        raise _FilterSyntaxError(f"unexpected {_describe(tok)}")

    def _field(self, name: str) -> _Field:
        if name not in self.schema.names:
            raise _FilterSyntaxError(f"no column {name!r}; columns are {', '.join(self.schema.names)}")
        self.columns.add(name)
        return _Field(name, self.schema.field(name).type)


def _tokenize(sql: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(sql):
        if sql[pos:].strip() == "":
            break
        match = _TOKEN.match(sql, pos)
        if match is None or match.lastgroup is None:
            raise _FilterSyntaxError(f"cannot read {sql[pos:].strip()[:20]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


def _describe(tok: tuple[str, str] | None) -> str:
    return "the end of the filter" if tok is None else repr(tok[1])


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _typed_literal(word: str, raw: str) -> _Literal:
    try:
        if word == "DATE":
            return _Literal(date.fromisoformat(raw), pa.date32())
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _FilterSyntaxError(f"{word} {raw!r} is not an ISO date/time") from None
    return _Literal(value, pa.timestamp("us", tz="UTC" if value.tzinfo else None))


def _coerce(lit: _Literal, target: pa.DataType) -> Any:
    """Return the literal as a value of the column type ``target``, as SQL engines coerce it."""
    value = lit.value
    if value is None:
        return None
    try:
        if pa.types.is_timestamp(target):
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif isinstance(value, date) and not isinstance(value, datetime):
                value = datetime(value.year, value.month, value.day)
            if isinstance(value, datetime):
                if target.tz is not None and value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
                elif target.tz is None and value.tzinfo is not None:
                    value = value.astimezone(UTC).replace(tzinfo=None)
        elif pa.types.is_date(target):
            if isinstance(value, str):
                value = datetime.fromisoformat(value).date() if len(value) > 10 else date.fromisoformat(value)
            elif isinstance(value, datetime):
                value = value.date()
        elif (
            pa.types.is_string(target) or pa.types.is_large_string(target) or pa.types.is_string_view(target)
        ):
            if not isinstance(value, str):
                raise TypeError("not a string")
        elif isinstance(value, str):
            return pa.scalar(value).cast(target).as_py()
        return pa.scalar(value, type=target).as_py()
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise _FilterSyntaxError(f"cannot compare {target} with {value!r}: {exc}") from None


def _compare(op: str, left: _Operand, right: _Operand) -> pc.Expression:
    if isinstance(left, _Field) and isinstance(right, _Literal):
        right = _Literal(_coerce(right, left.type), left.type)
    elif isinstance(right, _Field) and isinstance(left, _Literal):
        left = _Literal(_coerce(left, right.type), right.type)
    a, b = _expr(left), _expr(right)
    if op in ("=", "=="):
        return a == b
    if op in ("!=", "<>"):
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _expr(operand: _Operand) -> pc.Expression:
    if isinstance(operand, _Field):
        return pc.field(operand.name)
    if isinstance(operand, _Literal):
        return pc.scalar(pa.scalar(operand.value, type=operand.type))
    return operand


def _as_boolean(operand: _Operand) -> pc.Expression:
    if isinstance(operand, _Field):
        if not pa.types.is_boolean(operand.type):
            raise _FilterSyntaxError(f"column {operand.name!r} is {operand.type}, not a boolean condition")
        return pc.field(operand.name)
    if isinstance(operand, _Literal):
        if operand.value is not None and not isinstance(operand.value, bool):
            raise _FilterSyntaxError(f"{operand.value!r} is not a boolean condition")
        return pc.scalar(pa.scalar(operand.value, type=pa.bool_()))
    return operand


def _is_string_type(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)
    )
