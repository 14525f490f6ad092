"""What several test files share: where ../shared lives, and running `heartlab data` commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PTB_SAMPLE = SHARED / "data" / "ptb" / "ptb_beats_sample.parq"
MITDB = SHARED / "data" / "mitdb"

needs_ptb_sample = pytest.mark.skipif(
    not PTB_SAMPLE.is_file(), reason=f"real PTB sample not found at {PTB_SAMPLE} (../shared is absent)"
)
needs_mitdb = pytest.mark.skipif(
    not (MITDB / "100.atr").is_file(), reason=f"MIT-BIH records not found in {MITDB} (../shared is absent)"
)


def run_data(capsys, *argv: str) -> tuple[int, str, str]:
    """`heartlab data ARGV...` in process: (exit code, stdout, stderr)."""
    code = main(["data", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expect_data_error(capsys, *argv: str, words: tuple[str, ...] = (), out: Path | None = None) -> str:
    """Run `heartlab data ARGV...` expecting exit code 2 and exactly one `error:` line holding ``words``
    (case-insensitive); with ``out``, that folder must hold nothing afterwards. Returns the error line."""
    code, _, err = run_data(capsys, *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return lines[0]
