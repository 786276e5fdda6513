"""The fault suite keeps the score: each case records (case, expected, observed); the run ends with a table.

A test calls `fault_case("name", expected="...")`, does the bad thing, then sets `.observed` to what really
happened before asserting; a case whose test fails shows as such in the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

_CASES: list[FaultCase] = []


@dataclass
class FaultCase:
    case: str
    expected: str
    observed: str = "(test did not finish)"
    outcome: str = "?"


@pytest.fixture
def fault_case(request):
    """Register one fault case; the returned object's `observed` is filled in by the test."""
    created: list[FaultCase] = []

    def register(case: str, expected: str) -> FaultCase:
        entry = FaultCase(case=case, expected=expected)
        created.append(entry)
        _CASES.append(entry)
        return entry

    yield register
    report = getattr(request.node, "rep_call", None)
    for entry in created:
        entry.outcome = "ok" if report is not None and report.passed else "FAIL"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def pytest_terminal_summary(terminalreporter):
    if not _CASES:
        return
    terminalreporter.section("fault suite")
    width = max(len(entry.case) for entry in _CASES)
    terminalreporter.write_line(f"{'case':<{width}}  ok?   expected -> observed")
    for entry in _CASES:
        line = f"{entry.case:<{width}}  {entry.outcome:<4}  {entry.expected} -> {entry.observed}"
        terminalreporter.write_line(line)
    passed = sum(entry.outcome == "ok" for entry in _CASES)
    terminalreporter.write_line(f"{passed} of {len(_CASES)} fault cases behave as expected")
