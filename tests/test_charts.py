"""The pair page's chart: its axis labels stand at the values they say."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from scaling.charts import line_chart


def right_axis_labels(svg: str) -> list[str]:
    return re.findall(r'<text x="[\d.]+" y="[\d.]+" font-size="11" fill="#555">([^<]+)</text>', svg)


@pytest.mark.parametrize("most, labels", [(6, ["0", "4", "8"]), (3, ["0", "2", "4"]), (0, ["0", "0.5", "1"]),
                                          (45, ["0", "30", "60"])])
def test_each_tick_says_the_value_it_stands_at(most: int, labels: list[str]) -> None:
    times = [datetime(2026, 12, 6, tzinfo=UTC) + timedelta(minutes=i) for i in range(3)]
    svg = line_chart(times, [("visible messages", "#1f77b4", [10, 20, 15], "left"),
                             ("dynos running", "#2ca02c", [0, most, 0], "right")], title="t")
    assert right_axis_labels(svg) == labels  # before: 0 / 3 / 7 for six dynos, with "3" at 3.3
