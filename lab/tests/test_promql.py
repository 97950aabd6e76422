"""The PromQL subset parser: what it accepts, what it means, and how it rejects the rest."""
from __future__ import annotations

import pytest

from ceptra_lab.promql import (
    AGGREGATORS,
    FUNCTIONS,
    PromQLError,
    compile_matcher_regex,
    parse_duration_ms,
    parse_expression,
    tokenize,
)


def test_aggregation_with_by_before_the_argument():
    parsed = parse_expression('sum by (player_id)(\n  increase(anti_cheat_flags_total{queue="ranked"}[15s])\n)\n')
    assert parsed.aggregator == "sum"
    assert parsed.by_labels == ("player_id",)
    assert parsed.function == "increase"
    assert parsed.metric == "anti_cheat_flags_total"
    assert parsed.matchers == (("queue", "=", "ranked"),)
    assert parsed.range_ms == 15_000
    assert parsed.quantile is None


def test_aggregation_with_by_after_the_argument_and_several_labels():
    parsed = parse_expression("avg(avg_over_time(cell_jitter_seconds[30s])) by (cell_id, region,)")
    assert parsed.aggregator == "avg"
    assert parsed.by_labels == ("cell_id", "region")
    assert parsed.function == "avg_over_time"
    assert parsed.matchers == ()


def test_aggregation_without_by_and_function_without_aggregation():
    assert parse_expression("count(count_over_time(x[1m]))").by_labels == ()
    parsed = parse_expression("rate(\n  warehouse_orders_processed_total[10m]\n)")
    assert (parsed.aggregator, parsed.function, parsed.by_labels, parsed.range_ms) == (None, "rate", (), 600_000)


def test_quantile_over_time_takes_the_quantile_first():
    parsed = parse_expression('quantile_over_time(\n  0.95,\n  network_latency_seconds{link_state="UP"}[30s]\n)')
    assert parsed.function == "quantile_over_time"
    assert parsed.quantile == 0.95
    assert parsed.metric == "network_latency_seconds"


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_aggregator_over_every_function(aggregator, function):
    argument = "0.5, m[1m]" if function == "quantile_over_time" else "m[1m]"
    parsed = parse_expression(f"{aggregator} by (a) ({function}({argument}))")
    assert (parsed.aggregator, parsed.function, parsed.by_labels) == (aggregator, function, ("a",))


def test_all_four_matcher_operators_and_escapes():
    parsed = parse_expression(r'''increase(x{a="1", b!="2", c=~"HIGH|CRITICAL", d!~'te.*st', e="q\"uote"}[1m])''')
    assert parsed.matchers == (("a", "=", "1"), ("b", "!=", "2"), ("c", "=~", "HIGH|CRITICAL"),
                               ("d", "!~", "te.*st"), ("e", "=", 'q"uote'))


@pytest.mark.parametrize("text,ms", [
    ("15s", 15_000), ("30m", 1_800_000), ("1h", 3_600_000), ("6h", 21_600_000), ("2h", 7_200_000),
    ("10m", 600_000), ("60s", 60_000), ("1h30m", 5_400_000), ("500ms", 500), ("1d", 86_400_000),
])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms
    assert parse_expression(f"rate(x[{text}])").range_ms == ms


def test_regex_matchers_are_fully_anchored():
    regex = compile_matcher_regex("HIGH|CRITICAL")
    assert regex.fullmatch("HIGH") and regex.fullmatch("CRITICAL")
    assert not regex.fullmatch("HIGHEST")
    assert not regex.fullmatch("NOT_CRITICAL")


def test_tokenizer_positions():
    tokens = tokenize('sum by (a)(rate(x{b="c"}[5m]))')
    assert [t.text for t in tokens[:4]] == ["sum", "by", "(", "a"]
    assert [t.kind for t in tokens if t.text == "5m"] == ["duration"]
    assert tokens[-1].kind == "eof"


@pytest.mark.parametrize("expression,fragment,column", [
    ("rate(x[5m]) * 2", "binary operator '*' is not supported", 13),
    ("x + y", "binary operator '+' is not supported", 3),
    ("topk(3, rate(x[5m]))", "'topk' is not supported", 1),
    ("sum without (a)(rate(x[1m]))", "'without' is not supported", 5),
    ("sum(x)", "'sum' needs a range function around 'x'", 5),
    ("x", "a bare selector 'x' is not supported", 1),
    ("sum(sum(rate(x[1m])))", "nested aggregations are not supported", 5),
    ("rate(x)", "'rate' needs a range selector like x[5m]", 7),
    ("rate(x[0s])", "range [0s] must be positive", 8),
    ("rate(x[5q])", "unknown unit 'q'", 8),
    ("rate(x[5m:1m])", "subqueries are not supported", 10),
    ("rate(x[5m] offset 1m)", "'offset' is not supported", 12),
    ("rate(x[5m] @ 100)", "the '@' modifier is not supported", 12),
    ('rate(x{a=~"("}[1m])', "invalid regular expression '('", 11),
    ('rate(x{a=1}[1m])', "expected a quoted string after 'a='", 10),
    ('rate(x{a~"b"}[1m])', "unexpected character '~'", 9),
    ("quantile_over_time(x[1m])", "needs the quantile", 20),
    ("quantile_over_time(1.5, x[1m])", "quantile 1.5 is outside [0, 1]", 20),
    ("rate(0.5, x[1m])", "takes a single range selector argument", 6),
    ("sum by (a) (rate(x[1m])) by (b)", "'by' given twice", 26),
    ("sum by (a, a) (rate(x[1m]))", "label 'a' repeated", 12),
    ("rate(x[1m]) rate(y[1m])", "after the end of the expression", 13),
    ('rate(x{a="b}[1m])', "unterminated string", 10),
    ("", "empty expression", 1),
    ("rate({a=\"b\"}[1m])", "selectors without a metric name are not supported", 6),
])
def test_unsupported_syntax_names_position_and_what_is_supported(expression, fragment, column):
    with pytest.raises(PromQLError) as caught:
        parse_expression(expression)
    assert fragment in str(caught.value)
    assert caught.value.column == column
    assert str(caught.value).startswith(f"at line 1, column {column}: ")


def test_unsupported_function_message_lists_the_subset():
    with pytest.raises(PromQLError) as caught:
        parse_expression("irate(x[1m])")
    message = str(caught.value)
    assert "supported: sum|avg|min|max|count" in message
    assert "quantile_over_time" in message


def test_error_position_in_a_multi_line_expression():
    with pytest.raises(PromQLError) as caught:
        parse_expression("sum by (a)(\n  increase(\n    x{a=\"b\"}[5m]) / 2\n)")
    assert (caught.value.line, caught.value.column) == (3, 19)
