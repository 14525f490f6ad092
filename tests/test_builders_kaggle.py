"""`heartlab data kaggle`: the four Kaggle heartbeat CSVs -> the four beat files (CSVs written here, in the
exact Kaggle format: no header, 187 values then the label, '%.18e' numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heartlab.data import read_beats, read_metadata
from helpers import expect_data_error
from helpers import run_data as run

OUTPUTS = ("heart_big_train.parq", "heart_big_test.parq", "heart_train.parq", "heart_test.parq")


def write_csv(path: Path, signals: np.ndarray, labels: np.ndarray) -> None:
    np.savetxt(path, np.column_stack([signals, labels]), delimiter=",", fmt="%.18e")


def kaggle_folder(folder: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four CSVs (small) and return what each holds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    content = {}
    for name, n, labels in [
        ("mitbih_train.csv", 50, np.tile(np.arange(5), 10)),
        ("mitbih_test.csv", 15, np.tile(np.arange(5), 3)),
        ("ptbdb_normal.csv", 20, np.zeros(20)),
        ("ptbdb_abnormal.csv", 30, np.ones(30)),
    ]:
        signals = rng.random((n, 187))
        signals[:, 150:] = 0.0  # zero padding, as in the real files
        write_csv(folder / name, signals, labels.astype(float))
        content[name] = (signals, labels)
    return content


def test_kaggle_round_trip(tmp_path, capsys):
    content = kaggle_folder(tmp_path / "kaggle")
    out = tmp_path / "data"
    code, printed, err = run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)

    for csv_name, parq in [("mitbih_train.csv", "heart_big_train.parq"), ("mitbih_test.csv", "heart_big_test.parq")]:
        x, y = read_beats(out / parq, 5)
        signals, labels = content[csv_name]
        np.testing.assert_array_equal(x, signals.astype(np.float32))
        np.testing.assert_array_equal(y, labels)

    x_train, y_train = read_beats(out / "heart_train.parq", 2)
    x_test, y_test = read_beats(out / "heart_test.parq", 2)
    assert np.bincount(y_test).tolist() == [4, 6]  # 20% of 20 normal / 30 abnormal
    assert np.bincount(y_train).tolist() == [16, 24]
    # every PTB beat lands in exactly one file, with its file's label
    normal, abnormal = (content[n][0].astype(np.float32) for n in ("ptbdb_normal.csv", "ptbdb_abnormal.csv"))
    pooled = {row.tobytes(): label for rows, label in ((normal, 0), (abnormal, 1)) for row in rows}
    written = [(row.tobytes(), label) for x, y in ((x_train, y_train), (x_test, y_test)) for row, label in zip(x, y)]
    assert len(written) == len(pooled) == 50
    assert all(pooled[key] == label for key, label in written)
    assert read_metadata(out / "heart_test.parq")["split_seed"] == "0"
    assert "synthetic" not in read_metadata(out / "heart_test.parq")
    assert "normal" in printed and "Q" in printed


def test_kaggle_ptb_split_follows_the_seed(tmp_path, capsys):
    kaggle_folder(tmp_path / "kaggle")
    tests = []
    for seed in ("0", "0", "5"):
        out = tmp_path / f"out{len(tests)}"
        assert run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out), "--seed", seed)[0] == 0
        tests.append(read_beats(out / "heart_test.parq")[0])
    np.testing.assert_array_equal(tests[0], tests[1])
    assert not np.array_equal(tests[0], tests[2])


def test_kaggle_missing_folder_or_file(tmp_path, capsys):
    out = tmp_path / "data"
    expect_data_error(capsys, "kaggle", str(tmp_path / "nowhere"), "--out", str(out), words=("nowhere", "no such folder"), out=out)
    kaggle_folder(tmp_path / "kaggle")
    (tmp_path / "kaggle" / "ptbdb_normal.csv").unlink()
    expect_data_error(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out), words=("missing ptbdb_normal.csv",), out=out)


@pytest.mark.parametrize(
    ("name", "edit", "words"),
    [
        ("ptbdb_abnormal.csv", lambda rows: rows[:3] + [rows[3][:-1]] + rows[4:], ("line 4 has 187 values", "188")),
        ("ptbdb_abnormal.csv", lambda rows: rows[:2] + [rows[2] + ["0.5"]] + rows[3:], ("line 3 has 189 values",)),
        ("mitbih_test.csv", lambda rows: rows[:5] + [rows[5][:-1] + ["N"]] + rows[6:], ("line 6", "the label", "'N'")),
        ("mitbih_train.csv", lambda rows: [[f"c{i}" for i in range(188)]] + rows, ("line 1", "no header row")),
        ("mitbih_train.csv", lambda rows: rows[:1] + [rows[1][:-1] + ["7.0"]] + rows[2:], ("line 2", "label 7")),
        ("mitbih_train.csv", lambda rows: rows[:1] + [rows[1][:-1] + ["1.5"]] + rows[2:], ("line 2", "label 1.5")),
        ("ptbdb_normal.csv", lambda rows: rows[:1] + [rows[1][:-1] + ["1.0"]] + rows[2:], ("line 2", "swapped")),
        ("mitbih_test.csv", lambda rows: [], ("no rows",)),
    ],
)
def test_kaggle_bad_csv_gives_one_error_and_writes_nothing(tmp_path, capsys, name, edit, words):
    kaggle_folder(tmp_path / "kaggle")
    path = tmp_path / "kaggle" / name
    rows = [line.split(",") for line in path.read_text().splitlines()]
    path.write_text("".join(",".join(row) + "\n" for row in edit(rows)))
    out = tmp_path / "data"
    message = expect_data_error(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out), words=(name, *words), out=out)
    assert not out.exists(), message


def test_kaggle_failure_keeps_existing_files_intact(tmp_path, capsys):
    kaggle_folder(tmp_path / "kaggle")
    out = tmp_path / "data"
    assert run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out))[0] == 0
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    kaggle_folder(tmp_path / "kaggle", seed=1)  # new content ...
    with (tmp_path / "kaggle" / "ptbdb_abnormal.csv").open("a") as handle:
        handle.write("1,2,3\n")  # ... but the last file read is broken
    code, _, err = run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out), "--force")
    assert code == 2 and "ptbdb_abnormal.csv" in err
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    # and without --force the existing files are refused up front
    kaggle_folder(tmp_path / "kaggle", seed=1)
    code, _, err = run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out))
    assert code == 2 and "--force" in err
    assert run(capsys, "kaggle", str(tmp_path / "kaggle"), "--out", str(out), "--force")[0] == 0
    assert (out / "heart_big_train.parq").read_bytes() != before["heart_big_train.parq"]
