"""The metric names a PromQL expression reads, and the names a gateway exports, for the
checks of deploy/monitoring (alerts and dashboard)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Not after a digit or dot, so the exponent of 1e3 is no name.
_NAME = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
# Grafana's variable query: label_values(<series selector>, <label>)
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects (a PromQL expression or a Grafana label_values)."""
    if match := _LABEL_VALUES.match(expr):
        expr = match[1]
    text = _STRING.sub('""', expr)
    # Label matchers, range and offset durations and grouping labels hold no metric names.
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match[0].lower() not in _KEYWORDS:
            names.add(match[0])
    return names


def exported_names(exposition: str | None = None) -> set[str]:
    """The sample names of a /metrics page (default: a fresh gateway's registry), labelled
    families included even before their first sample."""
    text = exposition if exposition is not None else Metrics().render().decode()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }
