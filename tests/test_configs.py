"""configs/*.gin and heartlab.config.load_config: every config loads strictly, its bindings take effect, its
model builds and runs on its own input view; load_config's errors are HeartlabErrors naming the file."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch

from heartlab.config import load_config
from heartlab.data import BEAT_LENGTH, DATASETS, Split
from heartlab.errors import HeartlabError
from heartlab.evaluation import model_inputs
from heartlab.models import CNN2D, CNNGRU, CNN2DPlus, InceptionTime, ResNet1D, Transformer1D, Transformer1DPlus

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(p for p in CONFIGS.glob("*.gin") if p.name != "base.gin")

MODEL_BINDINGS = {
    CNN2D: {"CNN2D.hidden": 16, "CNN2D.num_layers": 1},
    Transformer1D: {
        "Transformer1D.hidden": 128,
        "Transformer1D.num_blocks": 3,
        "Transformer1D.num_heads": 4,
        "Transformer1D.dropout": 0.1,
    },
    ResNet1D: {"ResNet1D.channels": 32, "ResNet1D.blocks": 4, "ResNet1D.kernel_size": 5, "ResNet1D.dropout": 0.1},
    InceptionTime: {
        "InceptionTime.filters": 8,
        "InceptionTime.depth": 3,
        "InceptionTime.kernel_sizes": (9, 19, 39),
        "InceptionTime.bottleneck": 8,
        "InceptionTime.dropout": 0.1,
    },
    CNNGRU: {
        "CNNGRU.channels": 32,
        "CNNGRU.conv_blocks": 2,
        "CNNGRU.kernel_size": 7,
        "CNNGRU.hidden": 32,
        "CNNGRU.layers": 1,
        "CNNGRU.cell": "gru",
        "CNNGRU.dropout": 0.1,
    },
    CNN2DPlus: {
        "CNN2DPlus.width": 32,
        "CNN2DPlus.depth": 3,
        "CNN2DPlus.kernel_size": 3,
        "CNN2DPlus.pooling": "max",
        "CNN2DPlus.dropout": 0.1,
    },
    Transformer1DPlus: {
        "Transformer1DPlus.width": 64,
        "Transformer1DPlus.depth": 4,
        "Transformer1DPlus.heads": 4,
        "Transformer1DPlus.ff_width": 128,
        "Transformer1DPlus.dropout": 0.1,
        "Transformer1DPlus.attention_dropout": 0.0,
        "Transformer1DPlus.norm_first": True,
        "Transformer1DPlus.stem_width": 32,
        "Transformer1DPlus.stem_kernel": 7,
        "Transformer1DPlus.stem_stride": 4,
        "Transformer1DPlus.pooling": "cls",
    },
}

EXPECTED = {
    "ptb_cnn2d.gin": ("ptb", CNN2D, "inverse"),
    "ptb_resnet1d.gin": ("ptb", ResNet1D, "inverse"),
    "ptb_transformer.gin": ("ptb", Transformer1D, "inverse"),
    "arrhythmia_cnn2d.gin": ("arrhythmia", CNN2D, "log"),
    "arrhythmia_resnet1d.gin": ("arrhythmia", ResNet1D, "log"),
    "arrhythmia_resnet1d_wide.gin": ("arrhythmia", ResNet1D, "none"),  # the ablations' winner: no class weights
    "arrhythmia_transformer.gin": ("arrhythmia", Transformer1D, "log"),
    "ptb_inception.gin": ("ptb", InceptionTime, "inverse"),
    "arrhythmia_inception.gin": ("arrhythmia", InceptionTime, "log"),
    "ptb_cnn_gru.gin": ("ptb", CNNGRU, "inverse"),
    "arrhythmia_cnn_gru.gin": ("arrhythmia", CNNGRU, "log"),
    "ptb_cnn2d_plus.gin": ("ptb", CNN2DPlus, "inverse"),
    "arrhythmia_cnn2d_plus.gin": ("arrhythmia", CNN2DPlus, "log"),
    "ptb_transformer_plus.gin": ("ptb", Transformer1DPlus, "inverse"),
    "arrhythmia_transformer_plus.gin": ("arrhythmia", Transformer1DPlus, "log"),
}


def test_the_expected_experiment_configs_exist():
    assert set(EXPECTED) <= {p.name for p in EXPERIMENTS}
    assert (CONFIGS / "base.gin").is_file()


def test_base_config_loads():
    load_config(CONFIGS / "base.gin")
    assert gin.query_parameter("fit.epochs") == 20
    assert gin.query_parameter("fit.batch_size") == 256
    assert gin.query_parameter("fit.schedule") == "cosine"
    assert gin.query_parameter("fit.monitor") == "val/recall_macro"
    assert gin.query_parameter("fit.patience") == 6
    assert gin.query_parameter("load_splits.valid_fraction") == 0.2
    assert gin.query_parameter("torch.optim.AdamW.lr") == 1e-3
    assert gin.query_parameter("fit.optimizer").configurable.wrapped is torch.optim.AdamW
    assert gin.query_parameter("fit.loss").configurable.name == "WeightedCrossEntropy"
    assert gin.query_parameter("WeightedCrossEntropy.weighting") == "none"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_bindings_take_effect(name):
    dataset, model_class, weighting = EXPECTED[name]
    load_config(CONFIGS / name)
    assert gin.query_parameter("load_splits.dataset") == dataset
    assert gin.query_parameter("fit.model").configurable.wrapped is model_class
    assert gin.query_parameter("WeightedCrossEntropy.weighting") == weighting
    for key, value in MODEL_BINDINGS[model_class].items():
        assert gin.query_parameter(key) == value, key
    # base.gin's settings are included; the data file chooses the selection metric, the search file agrees
    assert gin.query_parameter("load_splits.valid_fraction") == 0.2
    selection = {"ptb": "val/op/precision", "arrhythmia": "val/op/recall_macro_floor", "arrhythmia_interpatient": "val/f2_macro"}
    assert gin.query_parameter("fit.monitor") == gin.query_parameter("search.metric") == selection[dataset]


def test_arrhythmia_resnet_overrides_base():
    load_config(CONFIGS / "arrhythmia_resnet1d.gin")
    assert gin.query_parameter("fit.epochs") == 10
    assert gin.query_parameter("fit.batch_size") == 512


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_is_consistent_and_its_model_runs(path):
    load_config(path)
    assert gin.query_parameter("fit.experiment") == path.stem
    spec = DATASETS[gin.query_parameter("load_splits.dataset")]
    assert path.stem.startswith(spec.name)
    # the file names live in heartlab.data.DATASETS only: an experiment names its dataset, not its files
    assert {"train_file", "test_file"}.isdisjoint(gin.get_bindings("load_splits")), gin.get_bindings("load_splits")
    torch.manual_seed(0)
    model = gin.query_parameter("fit.model").scoped_configurable_fn(num_classes=spec.num_classes).eval()
    split = Split(torch.rand(2, BEAT_LENGTH), torch.zeros(2, dtype=torch.long), rr=0.5 + torch.rand(2, 4))
    with torch.no_grad():
        out = model(*model_inputs(model, split, slice(None)))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


def test_bound_values_reach_the_model():
    load_config(CONFIGS / "ptb_cnn2d.gin", ["CNN2D.hidden = 5"])
    model = gin.query_parameter("fit.model").scoped_configurable_fn(num_classes=2)
    assert model.head[1].in_features == 48 * 5


def test_command_line_bindings_override_the_file():
    load_config(CONFIGS / "ptb_resnet1d.gin", ["fit.epochs = 3", "ResNet1D.channels = 8"])
    assert gin.query_parameter("fit.epochs") == 3
    assert gin.query_parameter("ResNet1D.channels") == 8


def test_load_config_clears_previous_bindings():
    load_config(CONFIGS / "ptb_resnet1d.gin", ["fit.epochs = 3"])
    load_config(CONFIGS / "ptb_cnn2d.gin")
    assert gin.query_parameter("fit.epochs") == 20
    with pytest.raises(ValueError):
        gin.query_parameter("ResNet1D.channels")


def test_include_resolves_from_the_project_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    load_config("configs/ptb_transformer.gin")
    assert gin.query_parameter("fit.epochs") == 20  # from the included base.gin


# load_config documents that `include 'configs/base.gin'` resolves against the config's own directory and
# its parent, "so it works from the project root and from configs/". The next two tests put the project root
# on sys.path, as `python -m pytest` run from the root does (and as Ray workers do for the driver's directory).


def test_include_resolves_from_the_configs_directory(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(CONFIGS)
    load_config("ptb_cnn2d.gin")
    assert gin.query_parameter("fit.patience") == 6  # from the included base.gin


def test_include_resolves_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(tmp_path)
    load_config(CONFIGS / "ptb_transformer.gin")
    assert gin.query_parameter("fit.epochs") == 20


# ---------------------------------------------------------------- errors


def assert_heartlab_error(path, bindings=(), *words: str, where: str | None = None) -> str:
    """load_config fails with one line that starts with ``where`` (default: the file) and holds ``words``."""
    with pytest.raises(HeartlabError) as info:
        load_config(path, bindings)
    message = str(info.value)
    assert message.startswith(where or str(path)), message
    for word in words:
        assert word in message, message
    return message


def test_missing_config_file(tmp_path):
    assert_heartlab_error(tmp_path / "nope.gin", (), "no such config file")


def test_unknown_configurable_in_binding():
    assert_heartlab_error(CONFIGS / "ptb_cnn2d.gin", ["ResNet2D.channels = 4"], "ResNet2D", where="--bind 'ResNet2D.channels = 4':")


def test_unknown_parameter_in_binding():
    assert_heartlab_error(CONFIGS / "ptb_cnn2d.gin", ["fit.epoch = 4"], "epoch", where="--bind 'fit.epoch = 4':")


def test_bad_syntax_in_binding():
    assert_heartlab_error(CONFIGS / "ptb_cnn2d.gin", ["fit.epochs = = 4"], where="--bind 'fit.epochs = = 4':")


def test_bad_syntax_in_file(tmp_path):
    path = tmp_path / "broken.gin"
    path.write_text(f"include '{CONFIGS / 'base.gin'}'\nfit.epochs 3\n")
    assert "\n" not in assert_heartlab_error(path, (), where=f"{path}:2:")


def test_unclosed_bracket_in_file(tmp_path):
    path = tmp_path / "unclosed.gin"
    path.write_text("fit.epochs = (3\n")
    assert_heartlab_error(path)


def test_unknown_configurable_in_file(tmp_path):
    path = tmp_path / "unknown.gin"
    path.write_text(f"include '{CONFIGS / 'base.gin'}'\nNotAModel.width = 3\n")
    assert_heartlab_error(path, (), "NotAModel")


def test_missing_include(tmp_path):
    path = tmp_path / "include.gin"
    path.write_text("include 'configs/does_not_exist.gin'\n")
    assert_heartlab_error(path, (), "does_not_exist.gin")


def test_error_message_is_one_line(tmp_path):
    # gin's own message spans lines ("... In file ..., line 2\n    fit.epoch = 3"); load_config joins them
    path = tmp_path / "typo.gin"
    path.write_text(f"include '{CONFIGS / 'base.gin'}'\nfit.epoch = 3\n")
    message = assert_heartlab_error(path, (), "epoch", where=f"{path}:2:")
    assert "\n" not in message
