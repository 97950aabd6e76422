"""The PromQL subset CEPtra bundles use: a small tokenizer and a recursive-descent parser.

Accepted (one expression per query)::

    AGG [by (l1, l2)] ( FUNC ( [q,] metric{matchers}[range] ) ) [by (l1, l2)]
    FUNC ( [q,] metric{matchers}[range] )

AGG is one of sum, avg, min, max, count; FUNC one of increase, rate, sum_over_time,
avg_over_time, min_over_time, max_over_time, count_over_time, quantile_over_time (which
takes the quantile q in [0, 1] first). Matchers are `label="v"`, `label!="v"`,
`label=~"re"`, `label!~"re"`; regexes are fully anchored, as in Prometheus. Ranges are
Prometheus durations (`15s`, `30m`, `1h30m`, `500ms`, `2d`).

Anything else (binary operators, `without`, `offset`, `@`, subqueries, nested aggregations,
other functions) is rejected with a PromQLError naming the position and what is supported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

AGGREGATORS = ("sum", "avg", "min", "max", "count")
FUNCTIONS = (
    "increase", "rate", "sum_over_time", "avg_over_time", "min_over_time",
    "max_over_time", "count_over_time", "quantile_over_time",
)
MATCH_OPS = ("=", "!=", "=~", "!~")
DURATION_UNITS_MS = {
    "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000,
    "d": 86_400_000, "w": 7 * 86_400_000, "y": 365 * 86_400_000,
}
SUPPORTED = (
    "supported: sum|avg|min|max|count [by (labels)] (FUNCTION(metric{matchers}[range])) "
    "or FUNCTION(metric{matchers}[range]), FUNCTION one of " + ", ".join(FUNCTIONS)
    + " (quantile_over_time(q, ...) takes the quantile first)"
)


class PromQLError(ValueError):
    """A PromQL expression outside the supported subset; .position is the 0-based offset."""

    def __init__(self, message: str, position: int, text: str):
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        self.position = position
        self.line = line
        self.column = column
        self.reason = message
        super().__init__(f"at line {line}, column {column}: {message}")


@dataclass(frozen=True)
class Token:
    kind: str    # ident, number, string, duration, punct, op, eof
    text: str    # for strings: the unescaped value
    pos: int


@dataclass(frozen=True)
class ParsedExpression:
    """The meaning of one supported expression."""

    aggregator: str | None
    by_labels: tuple[str, ...]
    function: str
    quantile: float | None
    metric: str
    matchers: tuple[tuple[str, str, str], ...]
    range_ms: int


def parse_duration_ms(text: str) -> int:
    """Parse a Prometheus duration ('15s', '1h30m', '500ms') into milliseconds; ValueError if bad."""
    if not text:
        raise ValueError("empty duration")
    total = 0
    i = 0
    while i < len(text):
        start = i
        while i < len(text) and text[i].isdigit():
            i += 1
        if i == start:
            raise ValueError(f"duration {text!r} must look like 15s, 30m, 1h or 1h30m")
        number = int(text[start:i])
        unit_start = i
        while i < len(text) and text[i].isalpha():
            i += 1
        unit = text[unit_start:i]
        if unit not in DURATION_UNITS_MS:
            raise ValueError(
                f"duration {text!r} has unknown unit {unit!r}; use one of ms, s, m, h, d, w, y")
        total += number * DURATION_UNITS_MS[unit]
    return total


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; PromQLError on characters outside the subset."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "#":  # PromQL comment runs to the end of the line
            while i < n and text[i] != "\n":
                i += 1
        elif ch.isalpha() or ch in "_:":
            start = i
            while i < n and (text[i].isalnum() or text[i] in "_:"):
                i += 1
            tokens.append(Token("ident", text[start:i], start))
        elif ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            start = i
            i = _scan_number_or_duration(text, i)
            word = text[start:i]
            kind = "duration" if tokens and tokens[-1].text == "[" else "number"
            tokens.append(Token(kind, word, start))
        elif ch in "\"'`":
            start = i
            value, i = _scan_string(text, i)
            tokens.append(Token("string", value, start))
        elif ch in "=!":
            start = i
            two = text[i:i + 2]
            if two in ("!=", "=~", "!~"):
                i += 2
                tokens.append(Token("op", two, start))
            elif two == "==":
                raise PromQLError("comparison operator '==' is not supported; " + SUPPORTED, i, text)
            elif ch == "=":
                i += 1
                tokens.append(Token("op", "=", start))
            else:
                raise PromQLError("unexpected '!'", i, text)
        elif ch in "(){}[],":
            tokens.append(Token("punct", ch, i))
            i += 1
        elif ch in "+-*/%^<>":
            raise PromQLError(f"binary operator {ch!r} is not supported; " + SUPPORTED, i, text)
        elif ch == "@":
            raise PromQLError("the '@' modifier is not supported; " + SUPPORTED, i, text)
        else:
            raise PromQLError(f"unexpected character {ch!r}", i, text)
    tokens.append(Token("eof", "", n))
    return tokens


def _scan_number_or_duration(text: str, i: int) -> int:
    """Return the end offset of a number (0.95, 1e-3) or duration (1h30m) starting at i."""
    n = len(text)
    while i < n and (text[i].isalnum() or text[i] == "."):
        # an exponent sign belongs to the number: 1e-3
        if text[i] in "eE" and i + 1 < n and text[i + 1] in "+-":
            i += 2
            continue
        i += 1
    return i


def _scan_string(text: str, i: int) -> tuple[str, int]:
    """Scan a quoted string starting at i; return (unescaped value, end offset)."""
    quote = text[i]
    start = i
    i += 1
    out: list[str] = []
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and quote != "`":
            nxt = text[i + 1:i + 2]
            # unknown escapes are kept verbatim so regexes like "a\.b" survive
            out.append(escapes[nxt] if nxt in escapes else "\\" + nxt)
            i += 2
            continue
        if ch == "\n" and quote != "`":
            break
        out.append(ch)
        i += 1
    raise PromQLError("unterminated string", start, text)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # -- helpers -----------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> PromQLError:
        return PromQLError(message, (token or self.peek()).pos, self.text)

    def expect(self, text: str, context: str) -> Token:
        token = self.peek()
        if token.kind == "punct" and token.text == text:
            return self.take()
        raise self.fail(f"expected '{text}' {context}, found {_describe(token)}")

    # -- grammar -----------------------------------------------------------------------
    def parse(self) -> ParsedExpression:
        token = self.peek()
        if token.kind == "eof":
            raise self.fail("empty expression; " + SUPPORTED)
        if token.kind == "ident" and token.text in AGGREGATORS:
            result = self.parse_aggregation()
        elif token.kind == "ident" and token.text in FUNCTIONS:
            result = self.parse_function(aggregator=None, by_labels=())
        elif token.kind == "ident" and self.peek(1).text == "(":
            raise self.fail(f"'{token.text}' is not supported; " + SUPPORTED)
        elif token.kind == "ident":
            raise self.fail(
                f"a bare selector '{token.text}' is not supported: wrap it in a range function, "
                f"e.g. increase({token.text}[5m]); " + SUPPORTED)
        else:
            raise self.fail(f"unexpected {_describe(token)} at the start; " + SUPPORTED)
        tail = self.peek()
        if tail.kind != "eof":
            raise self.fail(
                f"unexpected {_describe(tail)} after the end of the expression "
                "(binary operators and several expressions are not supported)")
        return result

    def parse_aggregation(self) -> ParsedExpression:
        aggregator = self.take().text
        by_labels = self.parse_grouping(None)
        self.expect("(", f"after '{aggregator}'")
        inner = self.peek()
        if inner.kind == "ident" and inner.text in AGGREGATORS:
            raise self.fail("nested aggregations are not supported; " + SUPPORTED)
        if not (inner.kind == "ident" and inner.text in FUNCTIONS):
            if inner.kind == "ident" and self.peek(1).text != "(":
                raise self.fail(
                    f"'{aggregator}' needs a range function around '{inner.text}', "
                    f"e.g. {aggregator}(increase({inner.text}[5m])); " + SUPPORTED)
            raise self.fail(f"{_describe(inner)} is not a supported function inside "
                            f"'{aggregator}(...)'; " + SUPPORTED)
        result = self.parse_function(aggregator, by_labels or ())
        self.expect(")", f"to close '{aggregator}('")
        trailing = self.parse_grouping(by_labels)
        if trailing is not None:
            result = ParsedExpression(aggregator, trailing, result.function, result.quantile,
                                      result.metric, result.matchers, result.range_ms)
        return result

    def parse_grouping(self, already: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Parse an optional `by (labels)`; None when absent."""
        token = self.peek()
        if token.kind != "ident" or token.text not in ("by", "without"):
            return None
        if token.text == "without":
            raise self.fail("'without' is not supported; group with 'by (labels)'")
        if already is not None:
            raise self.fail("'by' given twice; use a single 'by (labels)'")
        self.take()
        self.expect("(", "after 'by'")
        labels: list[str] = []
        while not (self.peek().kind == "punct" and self.peek().text == ")"):
            label = self.take()
            if label.kind != "ident" or not _is_label_name(label.text):
                raise self.fail(f"expected a label name in 'by (...)', found {_describe(label)}", label)
            if label.text in labels:
                raise self.fail(f"label '{label.text}' repeated in 'by (...)'", label)
            labels.append(label.text)
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != ")":
                raise self.fail(f"expected ',' or ')' in 'by (...)', found {_describe(self.peek())}")
        self.take()
        return tuple(labels)

    def parse_function(self, aggregator: str | None, by_labels: tuple[str, ...]) -> ParsedExpression:
        name_token = self.take()
        function = name_token.text
        self.expect("(", f"after '{function}'")
        quantile = None
        if function == "quantile_over_time":
            q_token = self.take()
            if q_token.kind != "number":
                raise self.fail("quantile_over_time needs the quantile (a number in [0, 1]) "
                                f"as its first argument, found {_describe(q_token)}", q_token)
            try:
                quantile = float(q_token.text)
            except ValueError:
                raise self.fail(f"bad number '{q_token.text}'", q_token) from None
            if not 0.0 <= quantile <= 1.0:
                raise self.fail(f"quantile {q_token.text} is outside [0, 1]", q_token)
            self.expect(",", "after the quantile")
        elif self.peek().kind == "number":
            raise self.fail(f"'{function}' takes a single range selector argument")
        metric, matchers, range_ms = self.parse_range_selector(function)
        self.expect(")", f"to close '{function}('")
        return ParsedExpression(aggregator, by_labels, function, quantile, metric,
                                tuple(matchers), range_ms)

    def parse_range_selector(self, function: str) -> tuple[str, list, int]:
        token = self.take()
        if token.kind != "ident":
            raise self.fail(f"expected a metric name inside '{function}(', found {_describe(token)}"
                            + (" (selectors without a metric name are not supported)"
                               if token.text == "{" else ""), token)
        if token.text in AGGREGATORS or token.text in FUNCTIONS:
            raise self.fail(f"'{token.text}' inside '{function}(' is not supported; "
                            + SUPPORTED, token)
        metric = token.text
        matchers: list[tuple[str, str, str]] = []
        if self.peek().text == "{" and self.peek().kind == "punct":
            self.take()
            matchers = self.parse_matchers()
        if not (self.peek().kind == "punct" and self.peek().text == "["):
            raise self.fail(f"'{function}' needs a range selector like {metric}[5m], "
                            f"found {_describe(self.peek())}")
        self.take()
        duration = self.take()
        if duration.kind != "duration":
            raise self.fail(f"expected a range like 5m inside '[...]', found {_describe(duration)}",
                            duration)
        try:
            range_ms = parse_duration_ms(duration.text)
        except ValueError as exc:
            raise self.fail(str(exc), duration) from None
        if range_ms <= 0:
            raise self.fail(f"range [{duration.text}] must be positive", duration)
        closing = self.peek()
        if closing.kind == "ident" or closing.text == ":":
            raise self.fail("subqueries are not supported; " + SUPPORTED)
        self.expect("]", "to close the range")
        after = self.peek()
        if after.kind == "ident" and after.text == "offset":
            raise self.fail("'offset' is not supported; " + SUPPORTED)
        return metric, matchers, range_ms

    def parse_matchers(self) -> list[tuple[str, str, str]]:
        matchers: list[tuple[str, str, str]] = []
        while not (self.peek().kind == "punct" and self.peek().text == "}"):
            label = self.take()
            if label.kind != "ident" or not _is_label_name(label.text):
                raise self.fail(f"expected a label name in '{{...}}', found {_describe(label)}", label)
            op = self.take()
            if op.kind != "op":
                raise self.fail(f"expected one of {', '.join(MATCH_OPS)} after '{label.text}', "
                                f"found {_describe(op)}", op)
            value = self.take()
            if value.kind != "string":
                raise self.fail(f"expected a quoted string after '{label.text}{op.text}', "
                                f"found {_describe(value)}", value)
            if op.text in ("=~", "!~"):
                try:
                    re.compile(value.text)
                except re.error as exc:
                    raise self.fail(f"invalid regular expression {value.text!r}: {exc}", value) from None
            matchers.append((label.text, op.text, value.text))
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != "}":
                raise self.fail(f"expected ',' or '}}' in the label matchers, found {_describe(self.peek())}")
        self.take()
        return matchers


def _is_label_name(text: str) -> bool:
    return bool(text) and ":" not in text and not text[0].isdigit()


def _describe(token: Token) -> str:
    if token.kind == "eof":
        return "the end of the expression"
    if token.kind == "string":
        return f"string {token.text!r}"
    return f"'{token.text}'"


def parse_expression(text: str) -> ParsedExpression:
    """Parse one expression of the supported subset; PromQLError (with position) otherwise."""
    if not isinstance(text, str):
        raise PromQLError("the expression must be a string", 0, "")
    return _Parser(text).parse()


def compile_matcher_regex(pattern: str) -> re.Pattern:
    """Compile a regex matcher value; callers use .fullmatch() so it is anchored on both
    ends, and '.' matches newlines, like Prometheus' ^(?s:re)$."""
    return re.compile(pattern, re.DOTALL)
