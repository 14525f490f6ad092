"""R-R intervals: their values in seconds (synthetic annotations, and record 100 of MIT-BIH checked by hand),
the features computed from them (:class:`RRFeatures`), the ResNet1D that feeds them to its head
(``rr_features``), and `heartlab train` with and without them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from heartlab import cli
from heartlab.beat_context import RR_COLUMNS
from heartlab.builders.mitbih import AAMI_LABELS, AVERAGE_RR_SECONDS, LOCAL_RR_SECONDS, build_record, rr_intervals
from heartlab.data import BEAT_LENGTH, as_view, load_splits, write_beats
from heartlab.errors import HeartlabError
from heartlab.evaluation import check_inputs, model_inputs
from heartlab.models.resnet1d import ResNet1D
from heartlab.models.rr import RRFeatures
from helpers import MITDB, ROOT, needs_mitdb

CLASSES = ("N", "S", "V", "F")

# ---------------------------------------------------------------------------- rr_intervals


def test_rr_columns_and_window_constants():
    assert RR_COLUMNS == ("rr_pre", "rr_post", "rr_local", "rr_average")
    assert LOCAL_RR_SECONDS == 5.0 and AVERAGE_RR_SECONDS == 150.0  # 10 s and 5 minutes, de Chazal et al. 2004


def test_rr_intervals_small_case_by_hand():
    # beats at 0, 1, 3, 4 and 7 s (100 Hz); windows of 1.5 s (local) and 3.5 s (average) either side
    rr = rr_intervals(np.array([0, 100, 300, 400, 700]), 100.0, local_seconds=1.5, average_seconds=3.5)
    assert rr.dtype == np.float32 and rr.shape == (5, 4)
    np.testing.assert_allclose(rr[:, 0], [1, 1, 2, 1, 3])  # rr_pre: the first beat takes its rr_post
    np.testing.assert_allclose(rr[:, 1], [1, 2, 1, 3, 3])  # rr_post: the last beat takes its rr_pre
    # rr_local: the mean rr_pre of the beats within 1.5 s, the beat included
    #   0 s: {0, 1} -> 1; 1 s: {0, 1} -> 1; 3 s: {3, 4} -> 1.5; 4 s: {3, 4} -> 1.5; 7 s: {7} -> 3
    np.testing.assert_allclose(rr[:, 2], [1, 1, 1.5, 1.5, 3])
    # rr_average: the same within 3.5 s
    #   0 s: {0, 1, 3} -> 4/3; 1 s: {0, 1, 3, 4} -> 5/4; 3 s: {0, 1, 3, 4} -> 5/4; 4 s: {1, 3, 4, 7} -> 7/4;
    #   7 s: {4, 7} -> 2
    np.testing.assert_allclose(rr[:, 3], [4 / 3, 5 / 4, 5 / 4, 7 / 4, 2], rtol=1e-6)


def test_rr_intervals_windows_include_beats_exactly_at_their_edge():
    # 128 Hz: every time is exact in binary, so a beat exactly 2 s (local) or 4 s (average) away is on the edge
    samples = np.array([0, 128, 256, 512, 768])  # 0, 1, 2, 4, 6 s; rr_pre 1, 1, 1, 2, 2
    rr = rr_intervals(samples, 128.0, local_seconds=2.0, average_seconds=4.0)
    np.testing.assert_allclose(rr[:, 0], [1, 1, 1, 2, 2])
    # local (2 s): 0 s: {0, 1, 2}; 1 s: {0, 1, 2}; 2 s: {0, 1, 2, 4}; 4 s: {2, 4, 6}; 6 s: {4, 6}
    np.testing.assert_allclose(rr[:, 2], [1, 1, 5 / 4, 5 / 3, 2], rtol=1e-6)
    # average (4 s): 0 s: {0, 1, 2, 4}; 1 s: {0, 1, 2, 4}; 2 s: all; 4 s: all; 6 s: {2, 4, 6}
    np.testing.assert_allclose(rr[:, 3], [5 / 4, 5 / 4, 7 / 5, 7 / 5, 5 / 3], rtol=1e-6)


def test_rr_intervals_local_mean_over_a_10_s_window():
    fs = 360.0
    rng = np.random.default_rng(0)
    gaps = rng.integers(200, 400, size=80)  # 0.56..1.1 s
    gaps[30:40] = 150  # a run of fast beats changes the local rhythm
    samples = np.concatenate([[50], 50 + np.cumsum(gaps)])
    rr = rr_intervals(samples, fs)
    times = samples / fs
    pre = np.concatenate([[times[1] - times[0]], np.diff(times)])
    sizes = []
    for i, t in enumerate(times):
        near = np.abs(times - t) <= 5.0  # a 10 s window centred on the beat
        sizes.append(int(near.sum()))
        assert rr[i, 2] == pytest.approx(pre[near].mean(), rel=1e-5), i
    assert min(sizes) >= 5 and max(sizes) > min(sizes) + 5  # windows cut at the ends, wide in the fast run
    np.testing.assert_allclose(rr[:, 0], pre, rtol=1e-5)
    np.testing.assert_allclose(rr[:-1, 1], np.diff(times), rtol=1e-5)
    assert rr[35, 2] < rr[5, 2]  # the fast run lowers the local mean


def test_rr_intervals_average_over_150_s_against_a_brute_force_loop():
    """rr_average with its default window against a plain loop: the mean rr_pre of every beat within 150 s
    (either side, the beat included). 12 minutes of beats with a slow stretch in the middle, so that the
    150 s windows are cut at the ends, hold different beats, and differ from both the 10 s and the whole
    record's mean."""
    fs = 360.0
    rng = np.random.default_rng(1)
    gaps = rng.integers(250, 330, size=900)  # 0.69..0.92 s
    gaps[400:520] = rng.integers(400, 460, size=120)  # a slow stretch of ~2 minutes
    gaps[200:210] = 180  # a run of premature beats: shortens the 10 s mean much more than the 5 minute one
    samples = np.concatenate([[123], 123 + np.cumsum(gaps)])
    rr = rr_intervals(samples, fs)  # the default windows: 5 s and 150 s
    times = samples / fs
    assert times[-1] - times[0] > 4 * AVERAGE_RR_SECONDS  # the windows of the middle beats are not cut
    pre = np.concatenate([[times[1] - times[0]], np.diff(times)])
    average, local, sizes = np.empty(times.size), np.empty(times.size), []
    for i, t in enumerate(times):
        near = np.abs(times - t) <= 150.0
        sizes.append(int(near.sum()))
        average[i] = pre[near].mean()
        local[i] = pre[np.abs(times - t) <= 5.0].mean()
    np.testing.assert_allclose(rr[:, 3], average, rtol=1e-5)
    np.testing.assert_allclose(rr[:, 2], local, rtol=1e-5)  # rr_local unchanged beside it
    assert min(sizes) < 0.6 * max(sizes)  # the windows at the ends are cut
    assert np.ptp(average) > 0.05  # the slow stretch moves the 5 minute mean: not the whole record's mean
    assert np.abs(rr[:, 3] - rr[:, 2]).max() > 0.1  # rr_average is not rr_local
    # in the premature run the 10 s mean drops well below the 5 minute one
    assert rr[205, 2] < 0.9 * rr[205, 3]
    assert abs(rr[205, 3] - rr[150, 3]) < 0.05


def test_rr_intervals_of_too_few_beats():
    assert rr_intervals(np.array([], dtype=np.int64), 360.0).shape == (0, 4)
    assert rr_intervals(np.array([10]), 360.0).shape == (1, 4)


@needs_mitdb
def test_record_100_rr_in_seconds_checked_by_hand():
    # 100.atr: '+' at 18 (rhythm, not a beat), N at 77, 370, 662, 946, 1231, 1515, 1809, A at 2044, N at 2402
    result = build_record(MITDB, "100")
    np.testing.assert_array_equal(result.r_peaks[:9], [77, 370, 662, 946, 1231, 1515, 1809, 2044, 2402])
    np.testing.assert_array_equal(result.labels[:9], [0, 0, 0, 0, 0, 0, 0, 1, 0])
    rr = result.rr
    assert rr.dtype == np.float32 and rr.shape == (result.labels.size, 4)
    assert rr[0, 1] == pytest.approx((370 - 77) / 360, abs=1e-6)  # rr_post of the first beat
    assert rr[0, 0] == pytest.approx(rr[0, 1], abs=1e-7)  # the first beat has no previous one
    assert rr[1, 0] == pytest.approx((370 - 77) / 360, abs=1e-6)
    assert rr[1, 1] == pytest.approx((662 - 370) / 360, abs=1e-6)
    assert rr[2, 0] == pytest.approx((662 - 370) / 360, abs=1e-6)
    # rr_local of the first beat: beats at 77 .. 1809 are within 5 s (1800 samples), 2044 is not
    assert rr[0, 2] == pytest.approx((293 + 293 + 292 + 284 + 285 + 284 + 294) / 7 / 360, abs=1e-6)
    # the premature (A) beat at 2044: a short rr_pre, a long rr_post, both against its local rhythm
    assert rr[7, 0] == pytest.approx((2044 - 1809) / 360, abs=1e-6)
    assert rr[7, 1] == pytest.approx((2402 - 2044) / 360, abs=1e-6)
    assert rr[7, 0] < 0.85 * rr[7, 2] < rr[7, 1]
    assert rr[7, 0] < 0.85 * rr[7, 3] < rr[7, 1]  # and against its 5 minute rhythm
    # the whole record, against its annotations (the last beat is dropped: no following beat)
    annotation = wfdb.rdann(str(MITDB / "100"), "atr")
    samples = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in AAMI_LABELS])
    np.testing.assert_array_equal(result.r_peaks, samples[:-1])
    np.testing.assert_allclose(rr[:, 1], np.diff(samples) / 360, atol=1e-6)
    assert 0.5 < float(np.median(rr[:, 2])) < 1.2  # ~75 bpm
    # rr_local and rr_average of every beat against a loop over the annotations (see window_means); the
    # beats with another exactly on a window's edge are checked in test_record_100_windows_edge_is_inclusive
    for column, reach in ((2, 5 * 360), (3, 150 * 360)):
        expected, on_edge = window_means(samples, reach)
        assert on_edge.mean() < 0.02, (column, np.flatnonzero(on_edge))  # the check covers nearly every beat
        np.testing.assert_allclose(rr[~on_edge, column], expected[~on_edge], atol=1e-6, err_msg=RR_COLUMNS[column])


def window_means(samples: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """For every beat but the last (which the builds drop): the mean rr_pre in seconds (360 Hz) of the beats
    whose annotation is at most ``reach`` samples away (the last beat included), in whole samples, and
    whether another beat is exactly ``reach`` samples away (on the window's edge)."""
    pre = np.diff(samples, prepend=samples[0] - (samples[1] - samples[0])) / 360
    means, on_edge = [], []
    for s in samples[:-1]:
        distance = np.abs(samples - s)
        means.append(pre[distance <= reach].mean())
        on_edge.append(bool((distance == reach).any()))
    return np.array(means), np.array(on_edge)


@needs_mitdb
def test_record_100_windows_edge_is_inclusive():
    """A beat exactly 150 s away is within 150 s, as a beat exactly 1.5 or 2 s away is in the synthetic
    cases above. In record 100, beat 21 (6214) is exactly 54000 samples before beat 207 (60214), and
    beat 25 (7391) before beat 211 (61391)."""
    result = build_record(MITDB, "100")
    annotation = wfdb.rdann(str(MITDB / "100"), "atr")
    samples = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in AAMI_LABELS])
    assert samples[207] - samples[21] == 54000 and samples[211] - samples[25] == 54000
    expected, on_edge = window_means(samples, 150 * 360)
    assert on_edge[[207, 211]].all()
    np.testing.assert_allclose(result.rr[on_edge, 3], expected[on_edge], atol=1e-6)


@needs_mitdb
def test_record_100_rr_average_checked_by_hand():
    """rr_average of three beats of record 100, from the sample numbers of its .atr file: the sum of rr_pre
    over consecutive beats j..k is s[k] - s[j - 1] (s[k] - s[0] + rr_pre[0] from the first beat)."""
    result = build_record(MITDB, "100")
    annotation = wfdb.rdann(str(MITDB / "100"), "atr")
    samples = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in AAMI_LABELS])
    rr = result.rr

    def window(i: int) -> tuple[int, int]:
        near = np.flatnonzero(np.abs(samples - samples[i]) <= 150 * 360)
        return int(near[0]), int(near[-1])

    # beat 0 (N at 77): beats 0..185 (77 .. 53923) are within 54000 samples, beat 186 (54219) is not
    assert window(0) == (0, 185) and samples[185] == 53923 and samples[186] == 54219
    assert rr[0, 3] == pytest.approx((293 + 53923 - 77) / 186 / 360, abs=1e-6)  # 0.8085 s
    # beat 7 (A at 2044): beats 0..192 (up to 55908; beat 193 at 56207 is 54163 samples away)
    assert window(7) == (0, 192) and samples[192] == 55908 and samples[193] == 56207
    assert rr[7, 3] == pytest.approx((293 + 55908 - 77) / 193 / 360, abs=1e-6)  # 0.8078 s
    # beat 1141 (N at 324044, 15 minutes in): beats 954..1327 (270257 .. 378005) - cut on neither side by
    # the record; beat 953 (269960) is 54084 samples before, beat 1328 (378308) 54264 after
    assert samples[1141] == 324044 and window(1141) == (954, 1327)
    assert samples[953] == 269960 and samples[1327] == 378005 and samples[1328] == 378308
    assert rr[1141, 3] == pytest.approx((378005 - 269960) / 374 / 360, abs=1e-6)  # 0.8025 s
    assert rr[1141, 3] != pytest.approx(rr[1141, 2], abs=5e-3)  # not the 10 s mean (0.8150 s)


# ----------------------------------------------------------------------------------- models

SMALL = dict(channels=4, blocks=1, kernel_size=3, num_classes=4)


def expected_rr_features(rr: np.ndarray) -> np.ndarray:
    """What RRFeatures computes before its batch norm: the logs of rr_pre, rr_post, rr_local, rr_average,
    then log(pre / average), log(post / average), log(local / average), log(pre / local), log(post / local)."""
    pre, post, local, average = np.maximum(rr, 1e-3).T.astype(np.float64)
    return np.log(np.stack(
        [pre, post, local, average, pre / average, post / average, local / average, pre / local, post / local], axis=1
    ))


def test_rr_features_values():
    rr = torch.tensor([[0.5, 1.0, 0.8, 0.9], [0.8, 0.8, 0.8, 0.8], [0.0, 1.0, 1.0, 1.2], [0.6, 0.6, 0.6, 1.0]])
    module = RRFeatures()
    assert RRFeatures.out_features == 9
    assert isinstance(module.norm, torch.nn.BatchNorm1d) and module.norm.num_features == 9
    # in eval mode at its initial running statistics (mean 0, variance 1) the norm only divides by
    # sqrt(1 + eps): the output is the features themselves
    with torch.no_grad():
        out = module.eval()(rr)
    assert out.shape == (4, RRFeatures.out_features)
    scale = float(np.sqrt(1.0 + module.norm.eps))
    np.testing.assert_allclose(out.detach().numpy() * scale, expected_rr_features(rr.numpy()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out[0].detach().numpy() * scale,
        np.log([0.5, 1.0, 0.8, 0.9, 0.5 / 0.9, 1.0 / 0.9, 0.8 / 0.9, 0.5 / 0.8, 1.0 / 0.8]),
        rtol=1e-5,
    )
    np.testing.assert_allclose(out[1, 4:].detach().numpy(), 0.0, atol=1e-7)  # the usual rhythm: log ratios 0
    # a whole run of fast beats: rr_pre and rr_post equal the local mean, only the ratios to rr_average show it
    np.testing.assert_allclose(out[3, 7:].detach().numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(out[3, 4:7].detach().numpy() * scale, np.log([0.6, 0.6, 0.6]), rtol=1e-5)
    assert torch.isfinite(out).all()  # a zero interval is clamped before the logarithm
    assert float(out[2, 0]) * scale == pytest.approx(np.log(1e-3), rel=1e-5)


def test_rr_features_are_standardised_per_batch_in_training():
    """In train mode the batch norm standardises each feature over the batch (a log ratio of -0.2 becomes
    comparable with the pooled beat features), and its running statistics follow the batches for eval."""
    generator = torch.Generator().manual_seed(0)
    rr = 0.6 + 0.5 * torch.rand(64, 4, generator=generator)
    module = RRFeatures().train()
    out = module(rr)
    assert out.shape == (64, 9)
    np.testing.assert_allclose(out.mean(dim=0).detach().numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(dim=0, unbiased=False).detach().numpy(), 1.0, rtol=1e-3)
    raw = torch.from_numpy(expected_rr_features(rr.numpy())).float()
    # the running mean moved from 0 towards the batch mean (by the norm's momentum), for the eval mode
    moved = module.norm.running_mean.numpy() / raw.mean(dim=0).numpy()
    assert ((moved > 0) & (moved <= 1 + 1e-5)).all(), moved
    # standardising the pre-norm features by hand gives the same output
    by_hand = (raw - raw.mean(dim=0)) / torch.sqrt(raw.var(dim=0, unbiased=False) + module.norm.eps)
    np.testing.assert_allclose(out.detach().numpy(), by_hand.numpy(), atol=1e-4)


def test_resnet1d_with_rr_features():
    torch.manual_seed(0)
    model = ResNet1D(rr_features=True, **SMALL).eval()
    assert model.uses_rr and not ResNet1D(**SMALL).uses_rr
    x = as_view(torch.rand(5, BEAT_LENGTH), model.input_view)
    rr = torch.full((5, 4), 0.8)
    with torch.no_grad():
        out = model(x, rr)
        assert out.shape == (5, 4) and torch.isfinite(out).all()
        premature = rr.clone()
        premature[:, 0] = 0.4
        assert not torch.allclose(model(x, premature), out)  # the intervals reach the logits
        slower = rr.clone()
        slower[:, 3] = 1.0  # only the 5 minute rhythm differs
        assert not torch.allclose(model(x, slower), out)  # rr_average reaches the logits too
        assert torch.equal(model(x, rr), out)
        with pytest.raises(ValueError, match="rr_features"):
            model(x)
    model.train()
    # intervals that vary over the batch: the train-mode batch norm turns constant ones into zeros
    varied = 0.6 + 0.5 * torch.rand(5, 4, generator=torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(model(x, varied), torch.tensor([0, 1, 2, 3, 0])).backward()
    assert model.head.layers[1].weight.shape == (4, 4 + RRFeatures.out_features)
    assert model.head.layers[1].weight.grad[:, -RRFeatures.out_features :].abs().sum() > 0


def test_model_inputs_and_check_inputs(make_beats):
    path = make_beats(10, 4)
    data = load_splits(dataset="arrhythmia_interpatient", train_file=str(path), test_file=str(path))
    assert data.train.rr is None and data.test.rr is None
    plain, with_rr = ResNet1D(**SMALL).eval(), ResNet1D(rr_features=True, **SMALL).eval()
    inputs = model_inputs(plain, data.train, slice(0, 3))
    assert len(inputs) == 1 and inputs[0].shape == (3, 1, BEAT_LENGTH)
    with torch.no_grad():
        assert plain(*inputs).shape == (3, 4)  # the default ResNet1D needs no R-R columns
    check_inputs(plain, data)
    with pytest.raises(HeartlabError, match="rr_features"):
        check_inputs(with_rr, data)


# ----------------------------------------------------------------------------------- training


def beat_file(
    path: Path, n_per_class: int, records: list[str] | None, rr: bool = True, seed: int = 0
) -> Path:
    """A tiny 4-class file (N, S, V, F interleaved), optionally with a record column (beats dealt to the
    records in turn, so every record holds every class) and R-R columns (S beats premature)."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(4), n_per_class)
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    signals[:, :20] += labels[:, None] * 0.1
    columns = {}
    if records:
        columns["record"] = np.array(records)[(np.arange(labels.size) // 4) % len(records)]
    if rr:
        local = rng.uniform(0.7, 1.0, labels.size)
        pre = np.where(labels == 1, 0.6 * local, local)
        average = local * rng.uniform(0.95, 1.05, labels.size)
        columns.update(rr_pre=pre, rr_post=local * 1.05, rr_local=local, rr_average=average)
    return write_beats(path, np.clip(signals, 0, 1), labels, columns)


def train_config(tmp_path: Path, train_file: Path, test_file: Path, *lines: str) -> Path:
    config = tmp_path / "interpatient_rr.gin"
    config.write_text(
        "\n".join([
            f"include '{ROOT / 'configs' / 'base.gin'}'",
            "load_splits.dataset = 'arrhythmia_interpatient'",
            f"load_splits.train_file = '{train_file}'",
            f"load_splits.test_file = '{test_file}'",
            "fit.experiment = 'rr'",
            f"fit.runs_root = '{tmp_path / 'runs'}'",
            "fit.model = @ResNet1D",
            "ResNet1D.channels = 4",
            "ResNet1D.blocks = 1",
            "ResNet1D.rr_features = True",
            "fit.epochs = 1",
            "fit.batch_size = 32",
            "fit.schedule = 'none'",
            "fit.num_threads = 1",
            "fit.patience = None",
            *lines,
        ]) + "\n"
    )
    return config


def only_run(runs: Path) -> Path:
    found = [p for p in (runs / "rr").iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def test_train_with_rr_features_writes_record_intervals(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 60, [f"r{i}" for i in range(10)])
    test_file = beat_file(tmp_path / "ds2.parq", 30, [f"t{i}" for i in range(6)], seed=1)
    config = train_config(tmp_path, train_file, test_file, "load_splits.valid_split = 'records'")
    assert cli.main(["train", str(config)]) == 0, capsys.readouterr().err
    run = only_run(tmp_path / "runs")
    assert "ResNet1D.rr_features = True" in (run / "config.gin").read_text()
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["classes"] == list(CLASSES)
    assert "test/ec57/precision/V" in result and "test/fpr/S" in result
    ci = result["ci95"]
    expected = {f"test/{kind}/{c}" for kind in ("recall", "precision") for c in CLASSES} | {"test/ec57/precision/V"}
    # every class is in every test record: its recall interval always exists (a precision interval may be
    # undefined when the class is never predicted, as after one epoch)
    assert {f"test/recall/{c}" for c in CLASSES} <= set(ci) <= expected
    for name, (low, high) in ci.items():
        if None not in (low, high) and not (np.isnan(low) or np.isnan(high)):
            assert 0.0 <= low <= high <= 1.0, (name, low, high)
    for c in CLASSES:  # every class is in the test file: its recall interval is defined and holds the point
        low, high = ci[f"test/recall/{c}"]
        assert low - 1e-9 <= result[f"test/recall/{c}"] <= high + 1e-9, (c, low, high)
    assert "6 test records" in result["ci95_method"]


def test_train_without_a_record_column_has_no_intervals(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 40, None)
    test_file = beat_file(tmp_path / "ds2.parq", 20, None, seed=1)
    assert cli.main(["train", str(train_config(tmp_path, train_file, test_file))]) == 0, capsys.readouterr().err
    result = json.loads((only_run(tmp_path / "runs") / "test_metrics.json").read_text())
    assert "test/recall/S" in result and "ci95" not in result


@pytest.mark.parametrize("rr_in", ["neither", "train only"])
def test_rr_features_without_rr_columns_exit_2_and_no_run(tmp_path, capsys, rr_in):
    train_file = beat_file(tmp_path / "ds1.parq", 20, ["a", "b"], rr=rr_in == "train only")
    test_file = beat_file(tmp_path / "ds2.parq", 10, ["c"], rr=False, seed=1)
    code = cli.main(["train", str(train_config(tmp_path, train_file, test_file))])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "rr_features" in lines[0] and "rr_pre" in lines[0], lines
    assert "rr_average" in lines[0], lines  # the message names every column the model needs
    assert not (tmp_path / "runs").exists()


def test_default_resnet1d_trains_on_files_without_rr(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 40, None, rr=False)
    test_file = beat_file(tmp_path / "ds2.parq", 20, None, rr=False, seed=1)
    config = train_config(tmp_path, train_file, test_file, "ResNet1D.rr_features = False")
    assert cli.main(["train", str(config)]) == 0, capsys.readouterr().err
    result = json.loads((only_run(tmp_path / "runs") / "test_metrics.json").read_text())
    assert 0.0 <= result["test/recall_macro"] <= 1.0 and len(result["confusion_matrix"]) == 4
