"""Parse a row filter (a SQL WHERE expression) once, strictly, for every source.

One grammar for all sources, so a filter means the same on a pandas frame, a
Parquet file, a Delta table and a Spark DataFrame, and a typo fails the same
way everywhere: the whole string must parse, or a SourceError names the
character where it stopped (DataFusion alone would read ``id < 5 ANDD id > 2``
as ``id < 5`` aliased ``ANDD`` and drop the rest). Arrow, pandas and Parquet
evaluate the parsed pyarrow expression; Delta (DataFusion) and Spark receive
:meth:`Predicate.sql`, the accepted tokens rendered in their dialect, so the
engine runs exactly what was checked and keeps its file skipping.

The grammar covers what a templated Airflow filter needs: comparisons,
``AND``/``OR``/``NOT``, ``[NOT] IN``, ``[NOT] BETWEEN``, ``IS [NOT] NULL``,
``[NOT] LIKE``/``ILIKE``, and string/number/boolean/``DATE``/``TIMESTAMP``
literals. String literals compared with a column are cast to the column's
type the way DataFusion does (``updated_at >= '2026-01-01'`` works on a
timestamp column; a literal without an offset is taken as UTC). Null
semantics are SQL's: a row whose predicate is NULL is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias

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
Dialect = Literal["datafusion", "spark"]
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE", "ILIKE", "TRUE", "FALSE"}
_COMPARE = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class Token:
    kind: str  # num, str, qid, id, op
    text: str
    start: int  # offset in the filter string


@dataclass(frozen=True)
class Predicate:
    """A parsed filter: the Arrow expression, the columns it reads, and the tokens it was read from."""

    text: str
    expression: pc.Expression
    columns: frozenset[str]
    tokens: tuple[Token, ...] = ()
    field_tokens: frozenset[int] = frozenset()

    def sql(self, dialect: Dialect) -> str:
        """The filter as SQL of ``dialect``: identifiers quoted, keywords upper-case, nothing else."""
        return " ".join(_render(tok, i in self.field_tokens, dialect) for i, tok in enumerate(self.tokens))


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
    def __init__(self, message: str, at: int | None = None) -> None:
        super().__init__(message)
        self.at = at


def parse_predicate(text: str, schema: pa.Schema, *, where: str | None = None) -> Predicate:
    """Parse the whole of ``text`` against ``schema``; raise SourceError saying where it stopped.

    ``where`` names the source in the message (``Delta table 'delta:///…'``).
    """
    parser = _Parser(text, schema)
    try:
        result = parser.parse()
        _bind(result, schema)
    except _FilterSyntaxError as exc:
        at = "" if exc.at is None else f" at character {exc.at + 1} ({_excerpt(text, exc.at)})"
        raise SourceError(
            f"invalid filter {text!r}{' on ' + where if where else ''}{at}: {exc}",
            hint=f"filters support {SUPPORTED}",
            filter=text,
            position=exc.at,
        ) from None
    return Predicate(
        text=text,
        expression=result,
        columns=frozenset(parser.columns),
        tokens=tuple(parser.tokens),
        field_tokens=frozenset(parser.field_tokens),
    )


def _bind(expression: pc.Expression, schema: pa.Schema) -> None:
    """Evaluate on zero rows, so type clashes (``text = id``) fail now, not mid-run in the scan."""
    try:
        schema.empty_table().filter(expression)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _FilterSyntaxError(f"the types do not match: {str(exc).splitlines()[0]}") from None


def _excerpt(text: str, at: int) -> str:
    rest = text[at:]
    return repr(rest if len(rest) <= 24 else rest[:24] + "...") if rest.strip() else "the end"


class _Parser:
    def __init__(self, text: str, schema: pa.Schema) -> None:
        self.text = text
        self.schema = schema
        self.columns: set[str] = set()
        self.field_tokens: set[int] = set()
        self.tokens: list[Token] = []
        self.pos = 0

    # -- token helpers -------------------------------------------------
    def _peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return (self.tokens[i].kind, self.tokens[i].text) if i < len(self.tokens) else None

    def _at(self, offset: int = 0) -> int:
        """Where the token at ``pos + offset`` starts (the end of the text past the last one)."""
        i = self.pos + offset
        return self.tokens[i].start if 0 <= i < len(self.tokens) else len(self.text.rstrip())

    def _fail(self, message: str, offset: int = 0) -> _FilterSyntaxError:
        return _FilterSyntaxError(message, self._at(offset))

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
            raise self._fail(f"expected {op!r} but found {_describe(tok)}")
        self.pos += 1

    # -- grammar ---------------------------------------------------------
    def parse(self) -> pc.Expression:
        self.tokens = _tokenize(self.text)
        if not self.tokens:
            raise _FilterSyntaxError("the filter is empty")
        expr = self._or()
        if self._peek() is not None:
            raise self._fail(f"unexpected {_describe(self._peek())} after a complete condition")
        return self._boolean(expr, 0)

    def _boolean(self, operand: _Operand, start: int) -> pc.Expression:
        try:
            return _as_boolean(operand)
        except _FilterSyntaxError as exc:
            at = self.tokens[start].start if start < len(self.tokens) else None
            raise _FilterSyntaxError(str(exc), at) from None

    def _or(self) -> _Operand:
        start = self.pos
        left = self._and()
        while self._accept_kw("OR"):
            right_start = self.pos
            left = self._boolean(left, start) | self._boolean(self._and(), right_start)
        return left

    def _and(self) -> _Operand:
        start = self.pos
        left = self._not()
        while self._accept_kw("AND"):
            right_start = self.pos
            left = self._boolean(left, start) & self._boolean(self._not(), right_start)
        return left

    def _not(self) -> _Operand:
        if self._accept_kw("NOT"):
            start = self.pos
            return ~self._boolean(self._not(), start)
        return self._predicate()

    def _predicate(self) -> _Operand:
        start = self.pos
        left = self._operand()
        tok = self._peek()
        if tok is not None and tok[0] == "op" and tok[1] in _COMPARE:
            self.pos += 1
            right = self._operand()
            try:
                return _compare(tok[1], left, right)
            except _FilterSyntaxError as exc:
                raise _FilterSyntaxError(str(exc), self.tokens[start].start) from None
        if self._accept_kw("IS"):
            negate = self._accept_kw("NOT")
            if not self._accept_kw("NULL"):
                raise self._fail(f"expected NULL after IS but found {_describe(self._peek())}")
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
                raise self._fail(f"expected AND in BETWEEN but found {_describe(self._peek())}")
            high = self._operand()
            expr = _compare(">=", left, low) & _compare("<=", left, high)
            return ~expr if negate else expr
        for word in ("LIKE", "ILIKE"):
            if self._accept_kw(word):
                pattern = self._operand()
                if not isinstance(pattern, _Literal) or not isinstance(pattern.value, str):
                    raise self._fail(f"{word} needs a quoted pattern", -1)
                expr = pc.match_like(_expr(left), pattern=pattern.value, ignore_case=word == "ILIKE")
                return ~expr if negate else expr
        return left

    def _in(self, left: _Operand, negate: bool) -> pc.Expression:
        if not isinstance(left, _Field):
            raise self._fail("IN needs a column on its left", -1)
        self._expect_op("(")
        values: list[Any] = []
        while True:
            item = self._operand()
            if not isinstance(item, _Literal):
                raise self._fail("IN lists may hold only literals", -1)
            try:
                values.append(_coerce(item, left.type))
            except _KeepLiteral:
                pass  # 1.5 in a list for an int column equals no row: leave it out, as SQL would
            except _FilterSyntaxError as exc:
                raise self._fail(str(exc), -1) from None
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
            raise self._fail("the filter ends too early")
        kind, text = tok
        self.pos += 1
        if kind == "op" and text == "(":
            inner = self._or()
            self._expect_op(")")
            return inner
        if kind == "op" and text == "-":
            nxt = self._peek()
            if nxt is None or nxt[0] != "num":
                raise self._fail("'-' must be followed by a number")
            self.pos += 1
            return _Literal(-_number(nxt[1]))
        if kind == "num":
            return _Literal(_number(text))
        if kind == "str":
            return _Literal(text[1:-1].replace("''", "'"))
        if kind == "qid":
            return self._field(text[1:-1].replace(text[0] * 2, text[0]), self.pos - 1)
        if kind == "id":
            word = text.upper()
            if word in ("TRUE", "FALSE"):
                return _Literal(word == "TRUE")
            if word == "NULL":
                return _Literal(None)
            nxt = self._peek()
            if word in ("DATE", "TIMESTAMP") and nxt is not None and nxt[0] == "str":
                raw = nxt[1][1:-1]
                self.pos += 1
                try:
                    return _typed_literal(word, raw)
                except _FilterSyntaxError as exc:
                    raise self._fail(str(exc), -2) from None
            if word in _KEYWORDS:
                raise self._fail(f"unexpected keyword {text}", -1)
            if nxt == ("op", "("):
                raise self._fail(f"functions such as {text}() are not supported", -1)
            return self._field(text, self.pos - 1)
        raise self._fail(f"unexpected {_describe(tok)}", -1)

    def _field(self, name: str, index: int) -> _Field:
        if name not in self.schema.names:
            raise _FilterSyntaxError(
                f"no column {name!r}; columns are {', '.join(self.schema.names)}", self.tokens[index].start
            )
        self.columns.add(name)
        self.field_tokens.add(index)
        return _Field(name, self.schema.field(name).type)


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            at = len(text[:pos]) + (len(text[pos:]) - len(text[pos:].lstrip()))
            what = "an unterminated quote" if text[at] in "'\"`" else repr(text[at])
            raise _FilterSyntaxError(f"cannot read {what}", at)
        kind = match.lastgroup
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


def _render(tok: Token, is_field: bool, dialect: Dialect) -> str:
    quote = "`" if dialect == "spark" else '"'
    if is_field:
        name = tok.text[1:-1].replace(tok.text[0] * 2, tok.text[0]) if tok.kind == "qid" else tok.text
        return quote + name.replace(quote, quote * 2) + quote
    if tok.kind == "id":
        return tok.text.upper()
    if tok.kind == "op" and tok.text == "==":
        return "="
    if tok.kind == "str" and dialect == "spark":
        # Spark SQL escapes with backslashes; '' would be two adjacent literals, not a quote.
        value = tok.text[1:-1].replace("''", "'")
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return tok.text


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
        elif pa.types.is_integer(target) and isinstance(value, float):
            if not value.is_integer():
                raise _KeepLiteral  # 1.5 against an int column: compare as numbers, as SQL does
            value = int(value)
        elif isinstance(value, bool) and not pa.types.is_boolean(target):
            raise TypeError("a boolean is not a number")
        return pa.scalar(value, type=target).as_py()
    except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
        raise _FilterSyntaxError(f"cannot compare {target} with {value!r}: {exc}") from None


class _KeepLiteral(Exception):
    """The literal cannot take the column's type without changing its value: compare it as it is."""


def _compare(op: str, left: _Operand, right: _Operand) -> pc.Expression:
    try:
        if isinstance(left, _Field) and isinstance(right, _Literal):
            right = _Literal(_coerce(right, left.type), left.type)
        elif isinstance(right, _Field) and isinstance(left, _Literal):
            left = _Literal(_coerce(left, right.type), right.type)
    except _KeepLiteral:
        pass
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
