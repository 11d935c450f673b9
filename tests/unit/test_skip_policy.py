"""The suite's skip rule (tests/conftest.py): listed with reasons; only system skips pass."""

from __future__ import annotations

import pytest

CONFTEST = (
    "from tests.conftest import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401\n"
)


def test_a_system_skip_is_listed_and_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        "from tests.skips import skip_system\n"
        "def test_ok(): pass\n"
        "def test_needs_gcc(): skip_system('gcc is not installed')\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["skipped: 1", "  1 x system: gcc is not installed"])


def test_any_other_skip_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_reads_a_file(): pytest.skip('reference payloads not available')\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["skipped: 1", "  1 x reference payloads not available", "FAILED: 1 skips not caused*"]
    )
