"""The search section: distribution strings, binding keys, and every bad section rejected before Ray starts
(exit code 2, one `error:` line, nothing written). Fast: no Ray, no training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gin
import numpy as np
import pytest
import torch

from heartlab import search
from heartlab.config import flatten_config, load_config, parse_text
from heartlab.data import DATASETS, Split, Splits, get_dataset
from heartlab.errors import HeartlabError
from heartlab.search import SearchSpace, binding_lines, check_binding_key, gin_literal, parse_distribution, parse_space
from heartlab.tune import prepare

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs").glob("*_*.gin"))


def load_hypertune():
    spec = importlib.util.spec_from_file_location("hypertune_script", ROOT / "hypertune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_splits(dataset: str, n: int = 24) -> Splits:
    spec = get_dataset(dataset)
    generator = torch.Generator().manual_seed(0)

    def split() -> Split:
        rr = 0.5 + torch.rand(n, 4, generator=generator)  # seconds, for models with rr_features
        return Split(torch.rand(n, 187, generator=generator), torch.arange(n) % spec.num_classes, rr=rr)

    return Splits(spec, split(), split(), split())


# ---- distribution strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("uniform(0.0, 3.0)", lambda v: isinstance(v, float) and 0.0 <= v <= 3.0),
        ("quniform(0, 1, 0.25)", lambda v: v in (0.0, 0.25, 0.5, 0.75, 1.0)),
        ("loguniform(1e-4, 3e-3)", lambda v: isinstance(v, float) and 1e-4 <= v <= 3e-3),
        ("qloguniform(1e-4, 1e-2, 1e-4)", lambda v: 1e-4 <= v <= 1e-2),
        ("randint(2, 6)", lambda v: type(v) is int and 2 <= v < 6),
        ("qrandint(8, 64, q=8)", lambda v: type(v) is int and v % 8 == 0),
        ("choice([16, 32, 64])", lambda v: v in (16, 32, 64) and type(v) is int),
        ("choice(['none', 'inverse'])", lambda v: v in ("none", "inverse")),
        ("grid_search([0.1, -0.2])", lambda v: v == 0.1),
    ],
)
def test_distributions_parse_and_sample_python_values(text, check):
    dist = parse_distribution(text, "k")
    for seed in range(5):
        value = dist.sample(seed)
        assert not isinstance(value, np.generic)
        assert check(value), (text, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "expected a call"),
        ("eval('1')", "unknown distribution 'eval'"),
        ("unifrom(0, 1)", "did you mean 'uniform'"),
        ("uniform(0, 1", "not a valid expression"),
        ("uniform(1)", "expected uniform(lower, upper)"),
        ("uniform(2, 1)", "must be below"),
        ("loguniform(0, 1)", "must be positive"),
        ("randint(1.5, 4)", "whole numbers"),
        ("choice([])", "non-empty list"),
        ("choice(x)", "must be literals"),
        ("choice([1 + 2])", "must be literals"),
        ("uniform(low=0, high=1)", "has no argument 'low'"),
        ("quniform(0, 1, q=0)", "quantum"),
        ("0.5", "expected a call"),
    ],
)
def test_bad_distribution_strings(text, message):
    with pytest.raises(HeartlabError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_distribution(text, "ResNet1D.channels")
    assert "ResNet1D.channels" in str(info.value)


def test_ray_domains_match_the_strings():
    from ray import tune as ray_tune

    space = parse_space({"ResNet1D.channels": "choice([4, 8])", "train/torch.optim.AdamW.lr": "grid_search([0.1, 0.2])"})
    ray_space = space.to_ray()
    assert set(ray_space) == {"ResNet1D.channels", "train:torch.optim.AdamW.lr"}  # '/' would mean nesting to Ray
    assert isinstance(ray_space["ResNet1D.channels"], ray_tune.search.sample.Categorical)
    assert ray_space["train:torch.optim.AdamW.lr"] == {"grid_search": [0.1, 0.2]}
    assert space.param_names()["train:torch.optim.AdamW.lr"] == "train/torch.optim.AdamW.lr"


# ---- binding keys ---------------------------------------------------------------------------------


def test_binding_keys_short_full_and_scoped():
    import heartlab.train  # noqa: F401

    assert check_binding_key("ResNet1D.channels") == ("", "heartlab.models.resnet1d.ResNet1D", "channels")
    assert check_binding_key("torch.optim.AdamW.lr") == ("", "torch.optim.AdamW", "lr")
    assert check_binding_key("train/ResNet1D.channels") == ("train", "heartlab.models.resnet1d.ResNet1D", "channels")


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("ResNet1D.chanels", "'ResNet1D.channels'"),
        ("train/ResNet1D.chanels", "'train/ResNet1D.channels'"),
        ("FocalLos.gamma", "'FocalLoss.gamma'"),
        ("torch.optim.AdamW.learning_rate", "lr, betas"),
        ("fit.data", "fit takes: model"),
    ],
)
def test_unknown_keys_name_the_nearest_valid_one(key, suggestion):
    import heartlab.train  # noqa: F401

    with pytest.raises(HeartlabError, match="is not a configurable parameter") as info:
        check_binding_key(key)
    assert suggestion in str(info.value)


def test_sampled_values_round_trip_through_gin():
    import heartlab.train  # noqa: F401

    values = {
        "ResNet1D.channels": np.int64(8),
        "torch.optim.AdamW.lr": np.float64(1.5e-4),
        "WeightedCrossEntropy.weighting": "inverse",
        "FocalLoss.alpha": [0.25, 0.75],
        "fit.model": "@CNN2D",
    }
    text = "\n".join(binding_lines(values))
    assert "np." not in text and "fit.model = @CNN2D" in text
    gin.parse_config(text)
    assert gin.query_parameter("ResNet1D.channels") == 8
    assert gin.query_parameter("torch.optim.AdamW.lr") == 1.5e-4
    assert gin.query_parameter("FocalLoss.alpha") == [0.25, 0.75]
    assert gin_literal(float("1e-7")) == "1e-07"
    with pytest.raises(HeartlabError):
        gin_literal(float("nan"))


# ---- the experiment configs -------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_has_a_valid_search_section(experiment):
    """Each of the six configs parses, its search section checks out, and the dry run builds its model."""
    dataset = max((name for name in DATASETS if experiment.startswith(f"{name}_")), key=len)
    study, _ = prepare.prepare_study(ROOT / "configs" / f"{experiment}.gin", data=fake_splits(dataset))
    assert study.settings.metric in ("val/op/recall_macro_floor", "val/f2_macro", "val/op/precision")  # recall first
    assert len(study.space.keys) >= 5
    assert study.expected_trials == study.settings.num_samples
    assert study.name == experiment
    # the flattened study config parses on its own, anywhere
    parse_text(study.study_config)
    assert gin.query_parameter("fit.experiment") == experiment
    assert gin.query_parameter("fit.monitor") == study.settings.metric


def test_experiment_configs_comment_every_range():
    for experiment in EXPERIMENTS:
        text = (ROOT / "configs" / f"{experiment}.gin").read_text()
        section = text[text.index("search.space = {") :]
        lines = [line.strip() for line in section.splitlines()[1:-1] if line.strip()]
        for comment, entry in zip(lines[::2], lines[1::2]):
            assert comment.startswith("#") and entry.startswith("'"), (experiment, comment, entry)


def test_flatten_config_inlines_includes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = flatten_config(ROOT / "configs" / "ptb_resnet1d.gin").text
    assert "include" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "fit.optimizer = @torch.optim.AdamW" in text  # from base.gin
    assert text.index("fit.optimizer") < text.index("fit.model = @ResNet1D")


# ---- bad search sections: exit code 2, nothing written --------------------------------------------


GOOD_SECTION = """
search.metric = 'val/recall_macro'
search.space = {'ResNet1D.channels': 'choice([4, 8])', 'torch.optim.AdamW.lr': 'loguniform(1e-4, 1e-2)'}
"""


def write_config(tmp_path: Path, train_file: Path, test_file: Path, section: str) -> Path:
    config = tmp_path / "study.gin"
    config.write_text(
        f"include '{ROOT / 'configs' / 'ptb_resnet1d.gin'}'\n"
        f"load_splits.train_file = '{train_file}'\n"
        f"load_splits.test_file = '{test_file}'\n"
        "ResNet1D.blocks = 1\n"
        "import heartlab.search\n" + section
    )
    return config


BAD_SECTIONS = {
    "unknown key": (
        "search.space = {'ResNet1D.chanels': 'choice([4, 8])'}",
        "search.space key 'ResNet1D.chanels' is not a configurable parameter",
        "did you mean 'ResNet1D.channels'?",
    ),
    "bad distribution": (
        "search.space = {'ResNet1D.channels': 'choise([4, 8])'}",
        "search.space['ResNet1D.channels'] = 'choise([4, 8])': unknown distribution 'choise'",
        "did you mean 'choice'?",
    ),
    "unsafe distribution": (
        "search.space = {'ResNet1D.channels': \"__import__('os').getcwd()\"}",
        "expected a call to one of",
        "uniform",
    ),
    "unknown metric": (
        "search.metric = 'val/recal_macro'\nsearch.space = {'ResNet1D.channels': 'choice([4, 8])'}",
        "search.metric 'val/recal_macro' is not a metric training reports",
        "did you mean 'val/recall_macro'?",
    ),
    "test metric": (
        "search.metric = 'test/recall_macro'\nsearch.space = {'ResNet1D.channels': 'choice([4, 8])'}",
        "is not a metric training reports",
        "val/auroc",
    ),
    "empty space": ("search.space = {}", "search.space is empty or missing", "choice([16, 32, 64])"),
    "no space": ("search.space = None", "search.space is empty or missing", ""),
    "bad mode": ("search.mode = 'maximum'\n" + GOOD_SECTION, "search.mode must be one of 'max', 'min'", ""),
    "unused key": (
        "search.space = {'CNN2D.hidden': 'choice([4, 8])'}",
        "search.space key 'CNN2D.hidden' has no effect in this experiment",
        "ResNet1D",
    ),
    "data key": (
        "search.space = {'load_splits.valid_fraction': 'uniform(0.1, 0.3)'}",
        "cannot be searched: the data is loaded once",
        "",
    ),
    "dry run": (
        "search.space = {'ResNet1D.kernel_size': 'choice([4])'}",
        "dry run (ResNet1D.kernel_size = 4): cannot build the model, loss or optimizer: ResNet1D.kernel_size must be odd",
        "",
    ),
    "optuna with grid": (
        "search.algorithm = 'optuna'\nsearch.space = {'ResNet1D.channels': 'grid_search([4, 8])'}",
        "grid_search cannot be used with search.algorithm = 'optuna'",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SECTIONS))
def test_bad_search_sections_exit_2_and_write_nothing(case, tmp_path, make_beats, capsys):
    section, message, hint = BAD_SECTIONS[case]
    config = write_config(tmp_path, make_beats(20, 2), make_beats(10, 2, seed=1), section)
    storage = tmp_path / "studies"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = load_hypertune().main([str(config), "--storage", str(storage), "--num-samples", "2"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert message in lines[0] and hint in lines[0], lines[0]
    assert not storage.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_command_line_values_exit_2(tmp_path, make_beats, capsys):
    config = write_config(tmp_path, make_beats(20, 2), make_beats(10, 2, seed=1), GOOD_SECTION)
    storage = tmp_path / "studies"
    hypertune = load_hypertune()
    assert hypertune.main([str(config), "--storage", str(storage), "--num-samples", "0"]) == 2
    assert "--num-samples must be a whole number >= 1" in capsys.readouterr().err
    assert hypertune.main([str(config), "--storage", str(storage), "--bind", "ResNet1D.chanels = 4"]) == 2
    assert "ResNet1D.chanels" in capsys.readouterr().err
    assert hypertune.main([str(tmp_path / "missing.gin"), "--storage", str(storage)]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert hypertune.main([str(config), "--storage", str(storage), "--resume"]) == 2
    assert "no study to resume" in capsys.readouterr().err
    assert not storage.exists()


def test_heartlab_tune_shares_the_arguments_and_errors(tmp_path, make_beats, capsys):
    from heartlab import cli

    config = write_config(tmp_path, make_beats(20, 2), make_beats(10, 2, seed=1), "search.space = {'x.y': 'uniform(0, 1)'}")
    assert cli.main(["tune", str(config), "--storage", str(tmp_path / "studies")]) == 2
    assert "error: search.space key 'x.y' is not a configurable parameter" in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()


def test_existing_study_needs_resume(tmp_path, make_beats, capsys):
    config = write_config(tmp_path, make_beats(20, 2), make_beats(10, 2, seed=1), GOOD_SECTION)
    (tmp_path / "studies" / "study").mkdir(parents=True)
    code = load_hypertune().main([str(config), "--storage", str(tmp_path / "studies")])
    assert code == 2
    assert "already exists: continue that study with --resume" in capsys.readouterr().err


def test_search_settings_reach_the_study(tmp_path, make_beats):
    section = GOOD_SECTION + (
        "search.num_samples = 5\nsearch.grace_period = 1\nsearch.max_epochs = 3\nsearch.cpus_per_trial = 2\n"
        "search.max_concurrent_trials = 1\nsearch.scheduler = 'none'\n"
    )
    config = write_config(tmp_path, make_beats(20, 2), make_beats(10, 2, seed=1), section)
    study, data = prepare.prepare_study(config, storage=tmp_path / "s", bindings=["fit.batch_size = 8"], num_samples=3)
    assert study.settings.num_samples == 3  # --num-samples wins over the section
    assert study.max_epochs == 3 and study.num_threads == 2
    assert study.path == (tmp_path / "s" / "study").resolve()
    assert study.study_config.text.rstrip().endswith("fit.batch_size = 8")
    assert len(data.train) + len(data.valid) == 40
    load_config(config)
    assert search.read_settings().max_concurrent_trials == 1


def test_space_sample_is_reproducible():
    import heartlab.train  # noqa: F401

    space = parse_space({"ResNet1D.channels": "choice([4, 8, 16])", "torch.optim.AdamW.lr": "loguniform(1e-4, 1e-2)"})
    assert isinstance(space, SearchSpace)
    assert space.sample(3) == space.sample(3)
