"""model_builds/reader_scan.py: which bar (and refusal-model bias) it chooses from a grid."""

from __future__ import annotations

from tests.model_builds import build_script


def point(bar: float, absent: float, false: float) -> dict:
    return {"bar": bar, "absent_refused": absent, "false_refusals": false}


def test_the_choice_stays_furthest_inside_both_targets() -> None:
    scan = build_script("reader_scan")
    grid = [
        point(0.40, 0.79, 0.05),  # misses the absent target
        point(0.44, 0.875, 0.076),  # inside both by 0.024
        point(0.46, 0.917, 0.093),  # more absent refused, but on the false-refusal edge
        point(0.50, 0.96, 0.14),  # misses the false-refusal target
    ]
    assert scan.margin(grid[1]) == 0.10 - 0.076
    assert scan.margin(grid[0]) < 0 and scan.margin(grid[3]) < 0
    assert scan.choose(grid)["bar"] == 0.44


def test_ties_go_to_fewer_false_refusals_then_more_absent_refused_then_the_lower_bar() -> None:
    scan = build_script("reader_scan")
    # Each inside both targets by 0.05.
    assert scan.choose([point(0.44, 0.85, 0.05), point(0.46, 0.85, 0.02)])["bar"] == 0.46
    assert scan.choose([point(0.46, 0.90, 0.05), point(0.44, 0.85, 0.05)])["bar"] == 0.46
    assert scan.choose([point(0.48, 0.90, 0.05), point(0.44, 0.90, 0.05)])["bar"] == 0.44


def test_without_a_point_inside_both_it_falls_back() -> None:
    scan = build_script("reader_scan")
    # None meets the absent target: the most absent refused at false refusals <= 0.10.
    assert scan.choose([point(0.40, 0.60, 0.02), point(0.46, 0.75, 0.09)])["bar"] == 0.46
    # None keeps false refusals under the target: the lowest bar refusing 0.8 of the absent.
    grid = [point(0.40, 0.70, 0.12), point(0.44, 0.82, 0.15), point(0.48, 0.90, 0.20)]
    assert scan.choose(grid)["bar"] == 0.44
