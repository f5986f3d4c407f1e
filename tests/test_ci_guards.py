"""Under CI (``CI=true``) a missing optional dependency fails the run instead of skipping its tests."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.fixtures.ci import in_ci, missing_dependency

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("1", True), ("", False), ("false", False)])
def test_ci_is_read_from_the_environment(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_missing_dependency_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="needs Java"):
        missing_dependency("needs Java")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and a test dependency is missing: needs Java"):
        missing_dependency("needs Java")


SUITE = """
import pytest

@pytest.mark.local_model
@pytest.mark.skipif(True, reason="local model extra not installed")
def test_needs_the_model():
    pass

@pytest.mark.spark
def test_needs_spark():
    pytest.skip("needs Java")

def test_plain_skip_stays_a_skip():
    pytest.skip("not applicable here")
"""


@pytest.mark.parametrize(
    ("ci", "outcomes"), [("true", {"errors": 1, "failed": 1, "skipped": 1}), ("", {"skipped": 3})]
)
def test_marked_tests_that_would_skip_fail_under_ci(pytester, monkeypatch, ci, outcomes):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    local_model: x\n    spark: x\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if ci:  # a skip in setup (a skipif marker, a fixture) fails as an error, one in the test as a failure
        result.stdout.fnmatch_lines(
            ["*CI=true and a 'local_model' test would skip: local model extra not installed*"]
        )
