"""Suite-wide rule: every skip is listed with its reason, and only system skips are allowed."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.skips import SYSTEM

pytest_plugins = ["pytester"]  # tests/unit/test_skip_policy.py runs pytest on this rule


def _skip_reasons(reporter: pytest.TerminalReporter) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for report in reporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    return reasons


def _forbidden(reasons: Counter[str]) -> list[str]:
    return [reason for reason in reasons if not reason.startswith(SYSTEM)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _forbidden(_skip_reasons(reporter)) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons = _skip_reasons(terminalreporter)
    total = sum(reasons.values())
    terminalreporter.write_line(f"skipped: {total}")
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"  {count} x {reason}")
    forbidden = _forbidden(reasons)
    if forbidden:
        terminalreporter.write_line(
            f"FAILED: {sum(reasons[r] for r in forbidden)} skips not caused by a missing system "
            "package (run .ci/install; only tests/skips.py may skip)",
            red=True,
        )
