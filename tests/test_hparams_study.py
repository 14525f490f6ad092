"""One TensorBoard HParams experiment per study, read back the way the dashboard reads it.

Every check goes through TensorBoard's own hparams backend (``get_experiment.Handler`` and
``list_session_groups.Handler``, the calls behind ``/data/plugin/hparams/experiment`` and
``/session_groups``) over a ``MultiplexerDataProvider`` of a study directory built without Ray:
:func:`heartlab.tune.hparams.write_study_experiment` at the root, one :class:`RunWriter` per trial folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.context import RequestContext
from tensorboard.plugins.base_plugin import TBContext
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata

import heartlab.train  # noqa: F401  (registers the configurables the search space names)
from heartlab import metrics
from heartlab.config import register_configurables
from heartlab.search import binding_lines, parse_distribution, parse_space
from heartlab.tensorboard import RunWriter, gin_bindings
from heartlab.tune.hparams import hparam_info, session_values, write_study_experiment
from helpers import ROOT

CLASSES = ("normal", "abnormal")
MONITOR = "val/recall_macro"
FLOAT64, STRING, BOOL = api_pb2.DATA_TYPE_FLOAT64, api_pb2.DATA_TYPE_STRING, api_pb2.DATA_TYPE_BOOL

# What a trial's operative config binds besides the searched keys (the constant columns of today).
BASE_CONFIG = """\
fit.model = @ResNet1D
fit.loss = @WeightedCrossEntropy
fit.optimizer = @torch.optim.AdamW
fit.bf16 = False
fit.batch_size = 64
ResNet1D.channels = 32
ResNet1D.blocks = 4
ResNet1D.dropout = 0.1
torch.optim.AdamW.lr = 0.001
torch.optim.AdamW.amsgrad = False
torch.optim.AdamW.betas = (0.9, 0.999)
torch.optim.AdamW.eps = 1e-08
torch.optim.AdamW.weight_decay = 0.01
WeightedCrossEntropy.weighting = 'inverse'
FocalLoss.alpha = None
"""

SPACE = {
    "ResNet1D.channels": "choice([16, 32, 64])",
    "ResNet1D.blocks": "randint(2, 6)",
    "ResNet1D.dropout": "quniform(0.0, 0.3, 0.1)",
    "torch.optim.AdamW.lr": "loguniform(3e-4, 3e-3)",
    "WeightedCrossEntropy.weighting": "choice(['none', 'sqrt_inverse', 'inverse'])",
    "fit.loss": "choice(['@FocalLoss', '@WeightedCrossEntropy'])",
    "fit.bf16": "choice([True, False])",
    "FocalLoss.alpha": "choice([None, 0.25])",
    "torch.optim.AdamW.betas": "choice([[0.9, 0.999], [0.8, 0.99]])",
    "fit.batch_size": "grid_search([32, 64])",
}

# trial -> (sampled values, best/val/recall_macro after each epoch); scalars are float32, so exact values.
TRIALS = {
    "trial_a": (
        {"ResNet1D.channels": 16, "ResNet1D.blocks": 2, "ResNet1D.dropout": 0.0, "torch.optim.AdamW.lr": 3e-4,
         "WeightedCrossEntropy.weighting": "none", "fit.loss": "@FocalLoss", "fit.bf16": True,
         "FocalLoss.alpha": None, "torch.optim.AdamW.betas": [0.9, 0.999], "fit.batch_size": 32},
        [0.5, 0.625],
    ),
    "trial_b": (
        {"ResNet1D.channels": 64, "ResNet1D.blocks": 5, "ResNet1D.dropout": 0.3, "torch.optim.AdamW.lr": 0.002,
         "WeightedCrossEntropy.weighting": "sqrt_inverse", "fit.loss": "@WeightedCrossEntropy", "fit.bf16": False,
         "FocalLoss.alpha": 0.25, "torch.optim.AdamW.betas": [0.8, 0.99], "fit.batch_size": 64},
        [0.75, 0.75, 0.75],
    ),
    "trial_c": (  # stopped by ASHA after one epoch: no session end
        {"ResNet1D.channels": 32, "ResNet1D.blocks": 3, "ResNet1D.dropout": 0.1, "torch.optim.AdamW.lr": 0.001,
         "WeightedCrossEntropy.weighting": "inverse", "fit.loss": "@FocalLoss", "fit.bf16": False,
         "FocalLoss.alpha": None, "torch.optim.AdamW.betas": [0.9, 0.999], "fit.batch_size": 32},
        [0.25],
    ),
}
# How each trial's searched values read back from its session group.
EXPECTED_SESSION = {
    "trial_a": {"ResNet1D.channels": 16.0, "ResNet1D.blocks": 2.0, "ResNet1D.dropout": 0.0,
                "torch.optim.AdamW.lr": 3e-4, "WeightedCrossEntropy.weighting": "none", "fit.loss": "@FocalLoss",
                "fit.bf16": True, "FocalLoss.alpha": "None", "torch.optim.AdamW.betas": "[0.9, 0.999]",
                "fit.batch_size": 32.0},
    "trial_b": {"ResNet1D.channels": 64.0, "ResNet1D.blocks": 5.0, "ResNet1D.dropout": 0.3,
                "torch.optim.AdamW.lr": 0.002, "WeightedCrossEntropy.weighting": "sqrt_inverse",
                "fit.loss": "@WeightedCrossEntropy", "fit.bf16": False, "FocalLoss.alpha": "0.25",
                "torch.optim.AdamW.betas": "[0.8, 0.99]", "fit.batch_size": 64.0},
    "trial_c": {"ResNet1D.channels": 32.0, "ResNet1D.blocks": 3.0, "ResNet1D.dropout": 0.1,
                "torch.optim.AdamW.lr": 0.001, "WeightedCrossEntropy.weighting": "inverse", "fit.loss": "@FocalLoss",
                "fit.bf16": False, "FocalLoss.alpha": "None", "torch.optim.AdamW.betas": "[0.9, 0.999]",
                "fit.batch_size": 32.0},
}


# ---- reading back through TensorBoard's hparams backend ----------------------------------------------------


def backend(logdir: Path) -> tuple[backend_context.Context, RequestContext]:
    """The hparams plugin's backend over ``logdir``, as ``tensorboard --logdir`` builds it."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = MultiplexerDataProvider(multiplexer, str(logdir))
    context = TBContext(data_provider=provider, multiplexer=multiplexer, logdir=str(logdir))
    return backend_context.Context(context), RequestContext()


def read_experiment(logdir: Path) -> api_pb2.Experiment:
    """What the dashboard's ``/experiment`` request returns."""
    context, request_context = backend(logdir)
    return get_experiment.Handler(request_context, context, "", api_pb2.GetExperimentRequest()).run()


def read_session_groups(logdir: Path, col_params=()) -> api_pb2.ListSessionGroupsResponse:
    """What the dashboard's ``/session_groups`` request returns (every status, no paging)."""
    context, request_context = backend(logdir)
    request = api_pb2.ListSessionGroupsRequest(
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                          api_pb2.STATUS_RUNNING],
        col_params=list(col_params),
        slice_size=100,
    )
    return list_session_groups.Handler(request_context, context, "", request).run()


def dashboard_filters(experiment: api_pb2.Experiment) -> list[api_pb2.ColParams]:
    """A column per hparam filtered to its whole domain, trials lacking a value excluded."""
    columns = []
    for info in experiment.hparam_infos:
        column = api_pb2.ColParams(hparam=info.name, exclude_missing_values=True)
        if info.HasField("domain_interval"):
            column.filter_interval.CopyFrom(info.domain_interval)
        else:
            column.filter_discrete.CopyFrom(info.domain_discrete)
        columns.append(column)
    return columns


def value_of(value) -> object:
    return getattr(value, value.WhichOneof("kind"))


# ---- the study directory ------------------------------------------------------------------------------------


@pytest.fixture
def space():
    register_configurables()
    return parse_space(SPACE)


@pytest.fixture
def study(tmp_path, space) -> Path:
    """A study directory: the experiment at the root, three trials as Ray's run_trial leaves them."""
    study_dir = tmp_path / "study"
    write_study_experiment(study_dir, space, metrics.metric_names(CLASSES))
    for name, (values, recalls) in TRIALS.items():
        config = BASE_CONFIG + "\n".join(binding_lines(values)) + "\n"
        hparams = {**gin_bindings(config), **session_values(space, values)}
        best = 0.0
        with RunWriter(study_dir / name, config, CLASSES, MONITOR, hparams=hparams) as writer:
            for epoch, recall in enumerate(recalls, start=1):
                best = max(best, recall)
                writer.epoch(epoch, {MONITOR: recall, "val/loss": 1.0 / epoch}, {MONITOR: best, "val/loss": 1.0})
            if name == "trial_a":
                logits, target = torch.eye(2).repeat(3, 1), torch.tensor([0, 1, 0, 1, 1, 0])
                writer.finish(len(recalls), {MONITOR: best}, logits, target)
    return study_dir


# ---- tests ---------------------------------------------------------------------------------------------------


def test_experiment_lists_the_searched_keys_with_their_domains(study):
    experiment = read_experiment(study)
    infos = {info.name: info for info in experiment.hparam_infos}
    assert set(infos) == set(SPACE)  # no torch.optim.AdamW.amsgrad, eps, fit.model...
    assert all(info.differs for info in infos.values())  # the dashboard shows differing columns first

    def interval(name):
        assert infos[name].type == FLOAT64 and not infos[name].HasField("domain_discrete"), name
        return infos[name].domain_interval.min_value, infos[name].domain_interval.max_value

    def discrete(name, data_type):
        assert infos[name].type == data_type and not infos[name].HasField("domain_interval"), name
        return [value_of(v) for v in infos[name].domain_discrete.values]

    assert interval("torch.optim.AdamW.lr") == (3e-4, 3e-3)
    assert interval("ResNet1D.blocks") == (2, 5)  # Ray's randint(2, 6) never draws 6
    assert interval("ResNet1D.dropout") == (0.0, 0.3)
    assert discrete("ResNet1D.channels", FLOAT64) == [16, 32, 64]
    assert discrete("fit.batch_size", FLOAT64) == [32, 64]
    assert discrete("WeightedCrossEntropy.weighting", STRING) == ["none", "sqrt_inverse", "inverse"]
    assert discrete("fit.loss", STRING) == ["@FocalLoss", "@WeightedCrossEntropy"]
    assert discrete("fit.bf16", BOOL) == [True, False]
    assert discrete("FocalLoss.alpha", STRING) == ["None", "0.25"]
    assert discrete("torch.optim.AdamW.betas", STRING) == ["[0.9, 0.999]", "[0.8, 0.99]"]
    assert infos["torch.optim.AdamW.lr"].description == SPACE["torch.optim.AdamW.lr"]

    expected_metrics = [f"best/{name}" for name in metrics.metric_names(CLASSES)]
    assert [m.name.tag for m in experiment.metric_infos] == expected_metrics
    assert all(m.name.group == "" for m in experiment.metric_infos)  # read from each session's own run


def test_only_the_study_root_holds_an_experiment(study):
    context, request_context = backend(study)
    tags = context.hparams_metadata(request_context, "")
    assert [run for run, run_tags in tags.items() if hparams_metadata.EXPERIMENT_TAG in run_tags] == ["."]
    sessions = sorted(run for run, run_tags in tags.items() if hparams_metadata.SESSION_START_INFO_TAG in run_tags)
    assert sessions == sorted(TRIALS)
    root_files = [p.name for p in study.iterdir() if p.is_file()]
    assert len(root_files) == 1 and root_files[0].startswith("events.out.tfevents.")


def test_session_groups_carry_each_trials_values_and_best_metric(study):
    response = read_session_groups(study)
    groups = {group.name: group for group in response.session_groups}
    assert set(groups) == set(TRIALS)
    for name, (_values, recalls) in TRIALS.items():
        group = groups[name]
        assert [session.name for session in group.sessions] == [name]
        logged = {key: value_of(group.hparams[key]) for key in SPACE}
        assert logged == EXPECTED_SESSION[name], name
        # the constant bindings stay in the session, only out of the experiment's columns
        assert value_of(group.hparams["torch.optim.AdamW.amsgrad"]) is False
        best = {m.name.tag: (m.value, m.training_step) for m in group.metric_values}
        assert best[f"best/{MONITOR}"] == (max(recalls), len(recalls)), name
        assert best["best/val/loss"] == (1.0, len(recalls))
    statuses = {name: group.sessions[0].status for name, group in groups.items()}
    assert statuses == {"trial_a": api_pb2.STATUS_SUCCESS, "trial_b": api_pb2.STATUS_UNKNOWN,
                        "trial_c": api_pb2.STATUS_UNKNOWN}


def test_every_trial_passes_filters_spanning_the_whole_domains(study):
    # A session value of another type than its column (a number in a column of gin text, say) would fail
    # the dashboard's filters and hide the trial.
    columns = dashboard_filters(read_experiment(study))
    assert len(columns) == len(SPACE)
    assert read_session_groups(study, columns).total_size == len(TRIALS)


def test_the_best_checkpoint_confusion_matrix_is_drawn(study):
    accumulator = event_accumulator.EventAccumulator(str(study / "trial_a"), size_guidance={"images": 0})
    accumulator.Reload()
    (image,) = accumulator.Images("val/confusion_matrix")
    assert image.step == 2 and image.width > 100 and image.height > 100


def test_writing_the_experiment_again_keeps_one(study, space):
    (first,) = [p for p in study.iterdir() if p.is_file()]
    before = read_experiment(study)
    again = write_study_experiment(study, parse_space({"ResNet1D.channels": "choice([8])"}), ["val/loss"])
    assert again == first
    assert [p for p in study.iterdir() if p.is_file()] == [first]
    assert read_experiment(study) == before
    assert read_session_groups(study).total_size == len(TRIALS)


@pytest.mark.parametrize(
    ("text", "data_type", "domain"),
    [
        ("uniform(0.0, 3.0)", FLOAT64, (0.0, 3.0)),
        ("quniform(0.0, 1.0, 0.25)", FLOAT64, (0.0, 1.0)),
        ("loguniform(1e-4, 1e-2)", FLOAT64, (1e-4, 1e-2)),
        ("qloguniform(1e-4, 1e-2, 1e-4)", FLOAT64, (1e-4, 1e-2)),
        ("randint(1, 10)", FLOAT64, (1, 9)),
        ("qrandint(1, 10)", FLOAT64, (1, 9)),  # q = 1: upper exclusive, as randint
        ("qrandint(2, 10, 2)", FLOAT64, (2, 10)),  # q > 1: upper inclusive
        ("choice([0.5, 1, 2])", FLOAT64, [0.5, 1.0, 2.0]),
        ("grid_search([8, 8, 16])", FLOAT64, [8.0, 16.0]),
        ("choice(['relu', 'gelu'])", STRING, ["relu", "gelu"]),
        ("grid_search(['@ResNet1D', '@CNN2D'])", STRING, ["@ResNet1D", "@CNN2D"]),
        ("choice([True, False])", BOOL, [True, False]),
        ("choice([1, True])", STRING, ["1", "True"]),
        ("choice([16, 'wide'])", STRING, ["16", "'wide'"]),
        ("choice([[1, 2], ['@A']])", STRING, ["[1, 2]", "[@A]"]),
        ("choice([{'a': 1}, None])", STRING, ["{'a': 1}", "None"]),
    ],
)
def test_domain_of_each_distribution(text, data_type, domain):
    info = hparam_info("X.y", parse_distribution(text))
    assert info.name == "X.y" and info.type == data_type
    if isinstance(domain, tuple):
        assert (info.domain_interval.min_value, info.domain_interval.max_value) == domain
        assert not info.HasField("domain_discrete")
    else:
        assert [value_of(v) for v in info.domain_discrete.values] == domain
        assert not info.HasField("domain_interval")


def test_run_writer_without_hparams_logs_the_gin_bindings(tmp_path):
    run_dir = tmp_path / "runs" / "run"
    with RunWriter(run_dir, BASE_CONFIG, CLASSES, MONITOR) as writer:
        writer.epoch(1, {MONITOR: 0.5}, {MONITOR: 0.5})
    bindings = gin_bindings(BASE_CONFIG)
    assert "torch.optim.AdamW.amsgrad" in bindings and bindings["FocalLoss.alpha"] == "None"
    experiment = read_experiment(tmp_path / "runs")  # the run's own experiment: every binding a column
    assert {info.name for info in experiment.hparam_infos} == set(bindings)
    (group,) = read_session_groups(tmp_path / "runs").session_groups
    # torch's hparams() stores bools as numbers: today's behaviour, kept
    assert {key: value_of(value) for key, value in group.hparams.items()} == {
        key: float(v) if isinstance(v, bool) else v for key, v in bindings.items()
    }
    assert [(m.name.tag, m.value) for m in group.metric_values] == [(f"best/{MONITOR}", 0.5)]


def test_importing_the_module_leaves_the_matplotlib_backend_alone(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import matplotlib
        if sys.argv[1] == "heartlab":
            import torch
            from torch.utils.tensorboard._utils import figure_to_image
            import heartlab.tensorboard as tb
            figure = tb.confusion_figure(torch.tensor([[3, 1], [0, 4]]), ("a", "b"), "t")
            assert figure_to_image(figure).shape[0] == 3  # what SummaryWriter.add_figure renders
        print(matplotlib.get_backend())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "MATPLOTLIBRC")}
    svg_rc = tmp_path / "matplotlibrc"  # a user (or notebook) whose matplotlibrc picks a backend
    svg_rc.write_text("backend: svg\n")
    processes = {  # side by side: importing torch takes seconds
        (rc, mode): subprocess.Popen(
            [sys.executable, "-c", script, mode], env={**env, **extra}, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rc, extra in (("default", {}), ("svg", {"MATPLOTLIBRC": str(svg_rc)}))
        for mode in ("bare", "heartlab")
    }
    backends = {}
    for key, process in processes.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        backends[key] = out.strip()
    assert backends["svg", "bare"] == "svg"
    assert backends["svg", "heartlab"] == "svg"
    assert backends["default", "heartlab"] == backends["default", "bare"]
