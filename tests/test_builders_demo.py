"""`heartlab data demo`: SYNTHETIC beat files with the real schema, clearly labelled, learnable."""

from __future__ import annotations

import numpy as np
import pytest
from loguru import logger

from heartlab.builders.demo import README_NAME, synthesize
from heartlab.cli import main
from heartlab.data import BEAT_LENGTH, read_beats, read_metadata

FILES = {"heart_big_train.parq": 5, "heart_big_test.parq": 5, "heart_train.parq": 2, "heart_test.parq": 2}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    assert main(["data", "demo", "--out", str(out), "--n-train", "1200", "--seed", "7"]) == 0
    return out


def test_demo_writes_four_labelled_synthetic_files(demo_dir):
    assert sorted(p.name for p in demo_dir.iterdir()) == sorted([*FILES, README_NAME])
    assert "SYNTHETIC" in (demo_dir / README_NAME).read_text()
    for name, num_classes in FILES.items():
        x, y = read_beats(demo_dir / name, num_classes)
        assert x.shape == ((1200 if "train" in name else 300), BEAT_LENGTH)
        assert set(np.unique(y).tolist()) == set(range(num_classes))
        assert read_metadata(demo_dir / name)["synthetic"] == "true"


def test_demo_beats_look_like_the_real_ones(demo_dir):
    x, y = read_beats(demo_dir / "heart_big_train.parq", 5)
    assert x.min() >= 0.0 and x.max() <= 1.0
    counts = np.bincount(y)
    assert counts[0] == counts.max() and counts.min() >= 0.05 * y.size  # imbalanced, minorities learnable
    length = BEAT_LENGTH - np.argmax(x[:, ::-1] != 0, axis=1)  # samples before the zero padding
    assert (length < BEAT_LENGTH).mean() > 0.9 and (length > 80).all()
    normal = x[y == 0]
    # a normal beat starts at its R peak: the first samples hold the maximum of the beat's first half
    first_half = normal[:, :60].max(axis=1)
    assert np.median(normal[:, :3].max(axis=1) / first_half) > 0.95


def test_demo_classes_are_separable(demo_dir):
    """A nearest-class-mean rule beats chance by far: a small model learns the demo in an epoch or two."""
    for train, test, num_classes in [
        ("heart_big_train.parq", "heart_big_test.parq", 5),
        ("heart_train.parq", "heart_test.parq", 2),
    ]:
        x, y = read_beats(demo_dir / train)
        x_test, y_test = read_beats(demo_dir / test)
        means = np.stack([x[y == c].mean(axis=0) for c in range(num_classes)])
        predicted = np.argmin(((x_test[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
        balanced = np.mean([(predicted[y_test == c] == c).mean() for c in range(num_classes)])
        assert balanced > 1.0 / num_classes + 0.2, (train, balanced)


def test_demo_is_deterministic_and_seeded(tmp_path, capsys):
    outs, logged = [], []
    sink = logger.add(logged.append, level="WARNING")
    try:
        for seed in ("1", "1", "2"):
            out = tmp_path / f"d{len(outs)}"
            argv = ["demo", "--out", str(out), "--n-train", "100", "--n-test", "40", "--seed", seed]
            code, printed, _ = run(capsys, *argv)
            assert code == 0
            assert "SYNTHETIC" in printed
            outs.append(read_beats(out / "heart_test.parq"))
    finally:
        logger.remove(sink)
    assert len(logged) == 3 and all("SYNTHETIC" in str(message) for message in logged)
    assert outs[0][0].shape == (40, BEAT_LENGTH)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert not np.array_equal(outs[0][0], outs[2][0])


def test_demo_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "heart_train.parq").write_text("real data")
    code, _, err = run(capsys, "demo", "--out", str(out), "--n-train", "100")
    assert code == 2 and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["heart_train.parq"]
    assert (out / "heart_train.parq").read_text() == "real data"
    assert run(capsys, "demo", "--out", str(out), "--n-train", "100", "--force")[0] == 0
    assert read_metadata(out / "heart_train.parq")["synthetic"] == "true"


def test_demo_bad_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "demo", "--out", str(tmp_path / "x"), "--n-train", "0"])
    code, _, err = run(capsys, "demo", "--out", str(tmp_path / "x"), "--n-train", "5")
    assert code == 2 and "at least 10" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["N", "S", "V", "F", "Q", "normal", "abnormal"])
def test_every_kind_is_normalised_and_padded(kind):
    beats = synthesize(kind, 50, np.random.default_rng(0))
    assert beats.shape == (50, BEAT_LENGTH) and beats.dtype == np.float32
    assert beats.min() >= 0.0 and beats.max() <= 1.0 and np.isfinite(beats).all()
    assert (beats[:, -10:] == 0).all()  # 1.2 x R-R stays below 1.5 s here: the tail is zero padding


def test_info_shows_synthetic(demo_dir, capsys):
    code, out, _ = run(capsys, "info", str(demo_dir / "heart_test.parq"), "--dataset", "ptb")
    assert code == 0 and "SYNTHETIC" in out
