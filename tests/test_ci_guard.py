"""Under CI (``CI=true``) a test that skips because ../shared is absent fails; elsewhere it skips.

The inner session runs in a fresh folder with copies of this suite's ``conftest.py`` and ``helpers.py``,
so ../shared really is absent there and the real skip helpers (``needs_ptb_sample``, ``needs_mitdb``, the
``ptb_files`` fixture) are the ones that skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

INNER = '''
import pytest
from helpers import needs_mitdb, needs_ptb_sample


@needs_ptb_sample
def test_needs_ptb_sample():
    pass


@needs_mitdb
def test_needs_mitdb():
    pass


def test_uses_ptb_files(ptb_files):
    pass


def test_other_skip():
    pytest.skip("no GPU on this machine")


def test_plain():
    pass
'''


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(helpers=(TESTS / "helpers.py").read_text(), test_inner=INNER)
    # helpers.py puts ../shared beside the parent of its folder: it must be absent for the inner session
    assert not (pytester.path.parent / "shared").exists()
    return pytester


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """The inner session, in process (no second torch import). This session's ``helpers`` module is taken
    out of ``sys.modules`` meanwhile, so that the inner conftest imports the copy (whose ../shared is absent);
    pytester restores ``sys.modules`` afterwards, monkeypatch puts ``helpers`` back."""
    monkeypatch.delitem(sys.modules, "helpers", raising=False)
    return pytester.runpytest("-p", "no:cacheprovider", "-rA")


def test_under_ci_a_missing_shared_folder_fails(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = run(inner, monkeypatch)
    outcomes = result.parseoutcomes()
    # the three skips happen during setup, so pytest counts their failures as errors
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 3, result.stdout.str()
    assert outcomes.get("skipped") == 1 and outcomes.get("passed") == 1, result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_needs_ptb_sample*CI=true*../shared is absent*"])
    result.stdout.fnmatch_lines(["*test_needs_mitdb*CI=true*../shared is absent*"])
    result.stdout.fnmatch_lines(["*test_uses_ptb_files*CI=true*../shared is absent*"])
    result.stdout.fnmatch_lines(["SKIPPED*no GPU on this machine*"])


def test_without_ci_a_missing_shared_folder_skips(inner, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = run(inner, monkeypatch)
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED*../shared is absent*"])
