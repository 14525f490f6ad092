"""Ray Tune studies: an experiment's search section, run as trials of the one training loop.

``python hypertune.py configs/ptb_resnet1d.gin`` (or ``heartlab tune ...``):

1. reads the config (``include`` lines inlined into one *study config*, plus ``--bind`` lines) and its
   search section, and checks everything before Ray starts: keys, distributions, metric, and a dry run
   that builds model, loss and optimizer for one sampled point. Any problem: ``HeartlabError``
   (exit code 2), nothing written;
2. loads the data once and hands it to every trial through Ray's object store (``tune.with_parameters``);
3. runs the trials: each clears gin, parses the study config, binds its sampled values and calls
   :func:`heartlab.train.fit` with ``run_dir`` = its trial directory, reporting every epoch's validation
   metrics (and the best checkpoint so far) to Ray, so that ASHA can stop weak trials early;
4. ranks the trials, writes ``trials.parquet``, ``best.gin`` and ``best_test_metrics.json`` (the best
   trial's checkpoint evaluated once on the test split) into ``<storage>/<name>/``.

An interrupted study (Ctrl-C, or a killed driver) continues with ``--resume``: finished trials are kept,
errored trials are retried once, trials that were running start again from epoch 1.

This module imports Ray, torch and the trainer lazily, so building the ``heartlab`` command stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from heartlab import results
from heartlab.errors import HeartlabError
from heartlab.search import SearchSettings, SearchSpace, binding_lines, parse_space, to_python

DEFAULT_STORAGE = "ray_results"
# Ray's default TensorBoardX logger would write a second copy of every curve next to the ones train.fit
# writes; this switches all of Ray's automatic loggers off and RUN_CONFIG adds back the CSV and JSON ones.
RAY_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Save the study state at least every 2 s (Ray's default: >= 10 s), so that a killed driver loses
    # little: a trial that finished before the last save is never rerun by --resume.
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    # Keeping one checkpoint per trial makes Ray save the study state at every new best epoch, which is
    # what resume wants; Ray warns about that frequency, needlessly for studies of this size.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
# gin keys a study cannot search: the data is loaded once by the driver, and a trial's threads and run
# directory are set by the study.
UNSEARCHABLE = {
    "heartlab.data.load_splits": "the data is loaded once by the driver and shared by all trials",
    "heartlab.search.search": "the search section configures the study itself",
}
UNSEARCHABLE_FIT = {"num_threads", "experiment", "runs_root", "monitor", "monitor_mode"}


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's command-line arguments (shared by ``hypertune.py`` and ``heartlab tune``)."""
    parser.description = parser.description or (
        "Hypertune an experiment with Ray Tune: the config's search section says what to sample; every trial "
        "trains with train.fit. Writes <storage>/<name>/ (trial directories, trials.parquet, best.gin, "
        "best_test_metrics.json)."
    )
    parser.add_argument("config", help="experiment config with a search section, e.g. configs/ptb_resnet1d.gin")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N", help="trials to run (default: search.num_samples)")
    parser.add_argument("--name", default=None, help="study name = directory under --storage (default: the config's file name)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, metavar="PATH", help=f"directory holding studies (default: ./{DEFAULT_STORAGE}); on a cluster, a path every node sees")
    parser.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="join an existing Ray cluster (see README, 'Hypertuning on a Ray cluster'); default: start Ray locally",
    )
    parser.add_argument("--resume", action="store_true", help="continue the interrupted study --name in --storage")
    parser.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gin binding for every trial, repeatable, e.g. --bind 'fit.epochs = 10'",
    )
    parser.add_argument("--cpus-per-trial", type=float, default=None, metavar="K", help="CPUs per trial (default: search.cpus_per_trial)")


def run_from_args(args: argparse.Namespace) -> int:
    """Run (or resume) the study the parsed arguments describe; returns the process exit code."""
    return run_study(
        args.config,
        num_samples=args.num_samples,
        name=args.name,
        storage=args.storage,
        address=args.address,
        resume=args.resume,
        bindings=args.bind,
        cpus_per_trial=args.cpus_per_trial,
    )


# ---------------------------------------------------------------------------------------------------
# The study config: one text, includes inlined
# ---------------------------------------------------------------------------------------------------

_INCLUDE = re.compile(r"""^\s*include\s+(['"])(?P<path>.+?)\1\s*(#.*)?$""")


def flatten_config(path: str | Path) -> str:
    """The text of a gin file with every ``include`` replaced by the included file's text (recursively).

    Includes resolve like :func:`heartlab.config.load_config`: absolute, else against the top config's
    parent directory, its own directory and the current directory (then, as a fallback, the including
    file's parent directory and its own).
    """
    top = Path(path).resolve()

    def resolve(name: str, including: Path) -> Path:
        candidate = Path(name)
        if candidate.is_absolute():
            return candidate
        for base in (top.parent.parent, top.parent, Path.cwd(), including.parent.parent, including.parent):
            if (base / candidate).is_file():
                return (base / candidate).resolve()
        raise HeartlabError(f"{including}: included file {name!r} not found")

    def expand(file: Path, stack: tuple[Path, ...]) -> str:
        if file in stack:
            raise HeartlabError(f"{file}: include cycle ({' -> '.join(str(p) for p in (*stack, file))})")
        try:
            text = file.read_text()
        except OSError as exc:
            raise HeartlabError(f"{file}: cannot read ({exc.strerror})") from None
        out = []
        for line in text.splitlines():
            match = _INCLUDE.match(line)
            if match:
                included = resolve(match["path"], file)
                out.append(f"# ---- include '{match['path']}' ({included}) ----")
                out.append(expand(included, (*stack, file)).rstrip("\n"))
                out.append(f"# ---- end of include '{match['path']}' ----")
            else:
                out.append(line)
        return "\n".join(out) + "\n"

    if not top.is_file():
        raise HeartlabError(f"{path}: no such config file")
    return expand(top, ())


def parse_text(text: str) -> None:
    """Clear gin and parse a study config text; HeartlabError on any problem."""
    import gin

    import heartlab.search  # noqa: F401  (registers `search`)
    import heartlab.train  # noqa: F401  (registers models, losses, optimizers, fit)

    gin.clear_config()
    try:
        gin.parse_config(text)
    except (ValueError, KeyError, SyntaxError, TypeError, ImportError) as exc:
        raise HeartlabError(f"study config: {' '.join(str(exc).split())}") from None


# ---------------------------------------------------------------------------------------------------
# Preparing a study: everything checked before Ray starts
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSpec:
    """What every trial needs besides its sampled config and the data (small; sent with the trainable)."""

    study_text: str  # the study config: experiment file with includes inlined, plus the study's bindings
    param_names: dict[str, str]  # Ray parameter name -> gin key
    num_threads: int  # torch threads = the trial's CPU share
    study_dir: str  # <storage>/<name>: trials write straight into <study_dir>/<trial dir name>/


@dataclass
class Study:
    """A checked study, ready to run."""

    config_path: Path
    name: str
    storage: Path
    settings: SearchSettings
    space: SearchSpace
    study_text: str
    max_epochs: int
    num_threads: int
    expected_trials: int
    bindings: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.storage / self.name

    def spec(self) -> TrialSpec:
        return TrialSpec(self.study_text, self.space.param_names(), self.num_threads, str(self.path))


def prepare_study(
    config: str | Path,
    *,
    num_samples: int | None = None,
    name: str | None = None,
    storage: str | Path = DEFAULT_STORAGE,
    bindings: list[str] | tuple[str, ...] = (),
    cpus_per_trial: float | None = None,
    data=None,
):
    """Read and check a study; returns ``(study, data)``. Writes nothing.

    ``data`` (a :class:`heartlab.data.Splits`) skips loading the config's data files (tests use it).

    Raises:
        HeartlabError: for a missing or unparsable config, a bad search section (unknown key, bad
            distribution, unknown metric, empty space), bad data files, or a dry run that fails.
    """
    import gin

    from heartlab import metrics, search
    from heartlab.config import load_config
    from heartlab.data import get_dataset, load_splits

    config_path = Path(config)
    load_config(config_path, bindings)  # errors name the file and line
    settings = search.read_settings()
    settings = _with_overrides(settings, num_samples, cpus_per_trial)
    space = parse_space(settings.space)
    _check_searchable(space)
    if settings.algorithm == "optuna":
        if space.has_grid:
            raise HeartlabError("search section: grid_search cannot be used with search.algorithm = 'optuna'")
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise HeartlabError(
                "search.algorithm = 'optuna' needs the optuna extra: pip install 'heartlab[optuna]'"
            ) from None

    dataset = get_dataset(gin.get_bindings("heartlab.data.load_splits").get("dataset", "ptb"))
    search.check_metric(settings.metric, metrics.metric_names(dataset.classes))

    # The study config: the experiment file as one text, then the study's own bindings, then --bind.
    lines = ["", "# ---- study bindings (hypertune) ----"]
    lines.append(f"fit.monitor = {settings.metric!r}  # the study metric also picks each trial's best epoch")
    lines.append(f"fit.monitor_mode = {settings.mode!r}")
    if settings.max_epochs is not None:
        lines.append(f"fit.epochs = {settings.max_epochs}  # search.max_epochs")
    if bindings:
        lines.append("# ---- --bind ----")
        lines.extend(bindings)
    study_text = flatten_config(config_path) + "\n".join(lines) + "\n"
    parse_text(study_text)
    fit_bindings = gin.get_bindings("heartlab.train.fit")
    max_epochs = int(fit_bindings.get("epochs", 20))
    if settings.scheduler == "asha" and settings.grace_period > max_epochs:
        raise HeartlabError(
            f"search.grace_period ({settings.grace_period}) exceeds the epochs per trial ({max_epochs}): "
            "lower it or raise fit.epochs / search.max_epochs"
        )

    if data is None:
        data = load_splits()
    dry_run(study_text, space, data)

    grid_points = math.prod(len(d.args[0]) for d in space.distributions.values() if d.is_grid)
    study = Study(
        config_path=config_path.resolve(),
        name=name or config_path.stem,
        storage=Path(storage).expanduser().resolve(),
        settings=settings,
        space=space,
        study_text=study_text,
        max_epochs=max_epochs,
        num_threads=max(1, int(round(settings.cpus_per_trial))),
        expected_trials=settings.num_samples * grid_points,
        bindings=tuple(bindings),
    )
    _check_name(study.name)
    return study, data


def _with_overrides(settings: SearchSettings, num_samples: int | None, cpus_per_trial: float | None) -> SearchSettings:
    from dataclasses import replace

    from heartlab.search import check_settings

    if num_samples is not None:
        settings = replace(settings, num_samples=num_samples)
    if cpus_per_trial is not None:
        settings = replace(settings, cpus_per_trial=cpus_per_trial)
    check_settings(settings)
    return settings


def _check_searchable(space: SearchSpace) -> None:
    from heartlab.search import check_binding_key

    for key in space.keys:
        _, selector, arg = check_binding_key(key)
        if selector in UNSEARCHABLE:
            raise HeartlabError(f"search.space key {key!r} cannot be searched: {UNSEARCHABLE[selector]}")
        if selector == "heartlab.train.fit" and arg in UNSEARCHABLE_FIT:
            raise HeartlabError(f"search.space key {key!r} cannot be searched: the study sets fit.{arg} itself")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise HeartlabError(f"--name {name!r}: give a plain directory name")


def dry_run(study_text: str, space: SearchSpace, data) -> dict[str, Any]:
    """Build model, loss and optimizer for one sampled point and push two beats through the model.

    Also checks that every searched key is read by something this experiment builds (or is a parameter
    of ``fit``): a key of an unused configurable would silently change nothing.

    Returns the sampled point. Raises HeartlabError naming the point and the failure.
    """
    import gin
    import torch

    from heartlab import train
    from heartlab.data import as_view
    from heartlab.search import check_binding_key

    point = space.sample(seed=0)
    shown = ", ".join(f"{k} = {v!r}" for k, v in point.items())
    parse_text(study_text + "\n".join(binding_lines(point)) + "\n")
    num_classes = len(data.classes)
    try:
        model_fn, loss_fn, optimizer_fn = train.bound("model"), train.bound("loss"), train.bound("optimizer")
        model, loss, _ = train.build(model_fn, loss_fn, optimizer_fn, data.train.class_counts(num_classes).tolist())
        model.eval()
        with torch.no_grad():
            logits = model(as_view(data.train.x[:2], model.input_view))
            loss(logits, data.train.y[:2])
        if tuple(logits.shape) != (2, num_classes):
            raise HeartlabError(f"the model returned logits of shape {tuple(logits.shape)}, expected (2, {num_classes})")
    except HeartlabError as exc:
        raise HeartlabError(f"dry run ({shown}): {exc}") from None
    except Exception as exc:  # the model's own checks (ValueError, shape errors from torch, ...)
        raise HeartlabError(f"dry run ({shown}): {type(exc).__name__}: {' '.join(str(exc).split())}") from None

    operative = gin.config._OPERATIVE_CONFIG  # noqa: SLF001 (which configurables were called, and with what)
    chosen = _referenced_selectors(space)
    for key in space.keys:
        scope, selector, arg = check_binding_key(key)
        if selector == "heartlab.train.fit" or selector in chosen:
            continue  # fit's own parameters; parameters of a configurable the search itself chooses
        used = any(
            op_selector == selector
            and arg in values
            and (not scope or op_scope == scope or op_scope.startswith(scope + "/"))
            for (op_scope, op_selector), values in operative.items()
        )
        if not used:
            raise HeartlabError(
                f"search.space key {key!r} has no effect in this experiment: nothing it builds reads that "
                f"parameter (model {getattr(model_fn, '__name__', model_fn)}, loss "
                f"{getattr(loss_fn, '__name__', loss_fn)}, optimizer {getattr(optimizer_fn, '__name__', optimizer_fn)})"
            )
    gin.clear_config()
    return point


def _referenced_selectors(space: SearchSpace) -> set[str]:
    """Complete selectors of the configurables a ``choice``/``grid_search`` picks (``'@FocalLoss'``)."""
    import gin

    selectors = set()
    for dist in space.distributions.values():
        if dist.name not in ("choice", "grid_search"):
            continue
        for value in dist.args[0]:
            if isinstance(value, str) and value.startswith("@"):
                name = value[1:].removesuffix("()").rpartition("/")[2]
                match = gin.config._REGISTRY.get_match(name)  # noqa: SLF001
                if match is not None:
                    selectors.add(match.selector)
    return selectors


# ---------------------------------------------------------------------------------------------------
# The trial
# ---------------------------------------------------------------------------------------------------


def run_trial(config: dict[str, Any], *, data, spec: TrialSpec) -> None:
    """One Ray trial: the study config plus this trial's sampled values, trained by ``train.fit``.

    Writes into the trial directory (``config.gin``, TensorBoard events, ``best.pt``, and
    ``fit_result.json`` if training ends by itself); reports every epoch to Ray with the best checkpoint.
    """
    import gin
    from ray import tune

    from heartlab import train

    # Ray 2.60's get_trial_dir() is a staging folder on the driver's node that Ray copies into the storage
    # now and then; writing straight into <storage>/<name>/<trial>/ works on any node that sees the
    # storage, and nothing is lost when the driver is killed between two copies.
    trial_dir = Path(spec.study_dir) / Path(tune.get_context().get_trial_dir()).name
    trial_dir.mkdir(parents=True, exist_ok=True)
    values = {spec.param_names[name]: to_python(value) for name, value in config.items() if name in spec.param_names}
    _clear_previous_attempt(trial_dir)
    gin.clear_config()
    gin.parse_config(spec.study_text + "\n# ---- sampled ----\n" + "\n".join(binding_lines(values)) + "\n")
    started = time.perf_counter()

    def report(epoch: train.EpochReport) -> None:
        row = {**epoch.metrics, "epoch": epoch.epoch, "fit_seconds": time.perf_counter() - started}
        if not epoch.is_best:
            tune.report(row)
            return
        with tempfile.TemporaryDirectory(prefix="heartlab-ckpt-") as folder:
            shutil.copy2(epoch.checkpoint, Path(folder) / epoch.checkpoint.name)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))

    result = train.fit(
        data=data, run_dir=trial_dir, on_epoch_end=report, evaluate_test=False, num_threads=spec.num_threads
    )
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_metrics": result.best_metrics,
        "fit_seconds": time.perf_counter() - started,
    }
    (trial_dir / results.FIT_RESULT).write_text(json.dumps(summary, indent=2) + "\n")


def _clear_previous_attempt(trial_dir: Path) -> None:
    """A restarted trial trains from epoch 1 again: drop the files the interrupted attempt left."""
    for name in ("config.gin", "best.pt", results.FIT_RESULT):
        (trial_dir / name).unlink(missing_ok=True)
    for events in trial_dir.rglob("events.out.tfevents.*"):
        if not any(part.startswith("checkpoint_") for part in events.relative_to(trial_dir).parts):
            events.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def run_study(
    config: str | Path,
    *,
    num_samples: int | None = None,
    name: str | None = None,
    storage: str | Path = DEFAULT_STORAGE,
    address: str | None = None,
    resume: bool = False,
    bindings: list[str] | tuple[str, ...] = (),
    cpus_per_trial: float | None = None,
) -> int:
    """Run or resume a study; returns 0 when it finished with a best trial, 1 when every trial failed,
    130 when it was interrupted (continue it with ``--resume``)."""
    if resume:
        study, data = _prepare_resume(config, name=name, storage=storage, bindings=bindings,
                                      num_samples=num_samples, cpus_per_trial=cpus_per_trial)
    else:
        study, data = prepare_study(
            config, num_samples=num_samples, name=name, storage=storage, bindings=bindings,
            cpus_per_trial=cpus_per_trial,
        )
        if study.path.exists():
            raise HeartlabError(
                f"{study.path} already exists: continue that study with --resume, or pick another --name"
            )

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    _start_ray(address)
    try:
        if not resume:
            _write_study_files(study)
        started = time.perf_counter()
        grid = _tuner(study, data, resume).fit()
        wall = time.perf_counter() - started
        return _finish(study, data, grid, wall)
    finally:
        import ray

        ray.shutdown()


def _start_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = ""
        if address and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = (
                " (a cluster with token authentication, the default since Ray 2.59, needs RAY_AUTH_MODE=token "
                "and its token in RAY_AUTH_TOKEN or ~/.ray/auth_token; see README)"
            )
        raise HeartlabError(f"cannot start or join {where}: {' '.join(str(exc).split())}{hint}") from None


def _tuner(study: Study, data, resume: bool):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, spec=study.spec()), {"cpu": study.settings.cpus_per_trial}
    )
    if resume:
        # Errored trials run once more, in their own directory and under their own id (restart_errored
        # would replace them by new trials). run_trial starts every attempt from epoch 1.
        return tune.Tuner.restore(str(study.path), trainable, resume_unfinished=True, resume_errored=True)

    settings = study.settings
    scheduler = None
    if settings.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="epoch",
            # One more than the epochs a trial runs: ASHA only stops trials at its rungs, and a trial that
            # survives them all ends by itself (so train.fit finishes its TensorBoard logs).
            max_t=study.max_epochs + 1,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    if settings.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=settings.seed)
        max_concurrent = settings.max_concurrent_trials  # Ray wraps the searcher in a ConcurrencyLimiter
    else:
        from ray.tune.search import BasicVariantGenerator

        # Ray ignores TuneConfig.max_concurrent_trials when given a BasicVariantGenerator: set it here.
        search_alg = BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent_trials or 0)
        max_concurrent = None
    return tune.Tuner(
        trainable,
        param_space=study.space.to_ray(),
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            search_alg=search_alg,
            scheduler=scheduler,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,  # a trial's process keeps torch and heartlab imported for the next trial
            trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=study.name,
            storage_path=str(study.storage),
            callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=settings.metric, checkpoint_score_order=settings.mode
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=1,
        ),
    )


def _prepare_resume(config, *, name, storage, bindings, num_samples, cpus_per_trial):
    """The stored study at ``<storage>/<name>`` (name defaults to the config's file name) and its data."""
    from ray import tune

    from heartlab.data import load_splits
    from heartlab.search import SearchSettings as Settings

    name = name or Path(config).stem
    _check_name(name)
    path = Path(storage).expanduser().resolve() / name
    settings_file = path / results.STUDY_FILE
    if not settings_file.is_file():
        raise HeartlabError(f"{path}: no study to resume (no {results.STUDY_FILE}); start it without --resume")
    if not tune.Tuner.can_restore(str(path)):
        raise HeartlabError(
            f"{path}: the study stopped before Ray saved its state, so it cannot be resumed; "
            "delete the directory and start again"
        )
    stored = results.read_study_settings(path)
    study_text = (path / results.STUDY_CONFIG).read_text()
    try:
        current = flatten_config(config)
    except HeartlabError:
        current = None
    if current is None or not study_text.startswith(current) or list(bindings) != stored.get("bindings", []):
        logger.warning(f"the config or --bind differ from the study's; resuming with the stored {path / results.STUDY_CONFIG}")
    if num_samples is not None or cpus_per_trial is not None:
        logger.warning("--num-samples and --cpus-per-trial are ignored on --resume (the study keeps its settings)")
    parse_text(study_text)
    data = load_splits()
    gin_clear()
    raw = dict(stored["settings"])
    settings = Settings(**raw)
    space = parse_space(settings.space)
    study = Study(
        config_path=Path(stored["config"]),
        name=name,
        storage=path.parent,
        settings=settings,
        space=space,
        study_text=study_text,
        max_epochs=int(stored["max_epochs"]),
        num_threads=int(stored["num_threads"]),
        expected_trials=int(stored["expected_trials"]),
        bindings=tuple(stored.get("bindings", [])),
    )
    return study, data


def gin_clear() -> None:
    import gin

    gin.clear_config()


def _write_study_files(study: Study) -> None:
    study.path.mkdir(parents=True, exist_ok=True)
    (study.path / results.STUDY_CONFIG).write_text(study.study_text)
    payload = {
        "config": str(study.config_path),
        "bindings": list(study.bindings),
        "settings": asdict(study.settings),
        "param_names": study.space.param_names(),
        "max_epochs": study.max_epochs,
        "num_threads": study.num_threads,
        "expected_trials": study.expected_trials,
    }
    (study.path / results.STUDY_FILE).write_text(json.dumps(payload, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------
# After the study: table, trials.parquet, best.gin, best_test_metrics.json
# ---------------------------------------------------------------------------------------------------


def _finish(study: Study, data, grid, wall: float) -> int:
    """Summarise a finished study; report an interrupted one (nothing written, exit code 130)."""
    names = study.space.param_names()
    settings = study.settings
    finished = grid.num_terminated + grid.num_errors
    if finished < len(grid) or len(grid) < study.expected_trials:
        print(
            f"\nstudy interrupted: {finished} of {study.expected_trials} trials finished. Continue it with:\n"
            f"  {resume_command(study)}",
            file=sys.stderr,
        )
        return 130

    rows = []
    for result in grid:
        trial_dir = study.path / Path(result.path).name
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id") or trial_dir.name.removeprefix("trial_"))
        values = {names[n]: to_python(v) for n, v in (result.config or {}).items() if n in names}
        error = None
        if result.error is not None:
            status, error = results.STATUS_ERROR, error_message(result.error)
        elif (trial_dir / results.FIT_RESULT).is_file():
            status = results.STATUS_COMPLETED
        else:
            status = results.STATUS_STOPPED  # terminated without train.fit returning: the scheduler stopped it
        rows.append(
            results.summarize_trial(
                trial_dir, trial_id=trial_id, values=values, metric=settings.metric, mode=settings.mode,
                status=status, error=error,
            )
        )

    frame = results.trials_frame(rows, study.space.keys, settings.mode)
    _write_atomic(study.path / results.TRIALS_FILE, lambda p: frame.write_parquet(p))
    print()
    print(format_table(frame, study))
    fit_total = sum(r["fit_s"] or 0.0 for r in rows)
    print(
        f"\n{len(rows)} trials in {wall:.1f} s wall time; {fit_total:.1f} s inside train.fit "
        f"(summed over trials); results in {study.path}"
    )
    errored = frame.filter(frame["status"] == results.STATUS_ERROR)
    if errored.height:
        print(f"\n{errored.height} trial(s) failed:")
        for row in errored.iter_rows(named=True):
            print(f"  {row['trial_dir']}: {row['error']}")

    ranked = frame.filter(frame["rank"] == 1)
    if ranked.height == 0:
        print("\nno trial produced a validation result: no best.gin written", file=sys.stderr)
        return 1
    best = ranked.row(0, named=True)
    best_dir = study.path / best["trial_dir"]
    best_values = {key: rows_by_id(rows)[best["trial_id"]][key] for key in study.space.keys}
    _write_atomic(study.path / results.BEST_CONFIG, lambda p: p.write_text(best_config(study, best, best_values)))

    from heartlab import train

    test_metrics = train.evaluate_run(best_dir, data)
    payload = {
        "trial_id": best["trial_id"],
        "trial_dir": str(best_dir),
        "metric": settings.metric,
        "mode": settings.mode,
        "score": best["score"],
        "hyperparameters": best_values,
        **test_metrics,
    }
    _write_atomic(
        study.path / results.BEST_TEST_METRICS, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n")
    )
    shown = "  ".join(f"{k} {v:.4f}" for k, v in test_metrics.items() if k.startswith("test/") and isinstance(v, float))
    print(f"\nbest: {best['trial_dir']} ({settings.metric} {best['score']:.4f}, epoch {best['best_epoch']})")
    print(f"test split, best checkpoint, evaluated once: {shown}")
    print(f"train it again: heartlab train {study.path / results.BEST_CONFIG}")
    return 0


def rows_by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["trial_id"]: row for row in rows}


def error_message(error: BaseException) -> str:
    """One line for a trial's exception: the original exception's type and message, not Ray's wrapper."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def resume_command(study: Study) -> str:
    return f"python hypertune.py {study.config_path} --resume --name {study.name} --storage {study.storage}"


def best_config(study: Study, best: dict[str, Any], values: dict[str, Any]) -> str:
    """``best.gin``: the study config (includes inlined, study bindings) and the best trial's values."""
    settings = study.settings
    header = [
        f"# Best trial of study {study.name!r} ({study.path}): {best['trial_dir']},",
        f"# {settings.metric} = {best['score']:.4f} at epoch {best['best_epoch']} "
        f"({best['status']}, {best['epochs']} epochs run).",
        f"# Train it again:  heartlab train {study.path / results.BEST_CONFIG}",
        f"# Below: {study.config_path} with its includes inlined and the study's bindings, then the best",
        "# trial's sampled values, which take precedence. The search section is inert under `heartlab train`.",
        "",
    ]
    footer = ["", f"# ---- best trial {best['trial_id']}: sampled values ----", *binding_lines(values), ""]
    return "\n".join(header) + study.study_text + "\n".join(footer)


def format_table(frame, study: Study) -> str:
    """The ranked trials as aligned text: rank, trial, status, metric, searched values, epochs, time."""
    metric = study.settings.metric
    keys = study.space.keys
    short = _short_names(keys)
    header = ["rank", "trial", "status", metric, *short.values(), "epochs", "time"]
    lines = [header]
    for row in frame.iter_rows(named=True):
        lines.append(
            [
                str(row["rank"]) if row["rank"] is not None else "-",
                row["trial_dir"],
                row["status"],
                _fmt(row["score"]),
                *(_fmt(row[k]) for k in keys),
                str(row["epochs"]),
                f"{row['time_s']:.1f}s" if row["time_s"] is not None else "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {0, 3, len(header) - 2, len(header) - 1} | {4 + i for i in range(len(keys))}
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )


def _short_names(keys: list[str]) -> dict[str, str]:
    def short(key: str) -> str:
        scope, _, rest = key.rpartition("/")
        tail = ".".join(rest.split(".")[-2:])
        return f"{scope}/{tail}" if scope else tail

    names = {key: short(key) for key in keys}
    if len(set(names.values())) < len(names):
        return {key: key for key in keys}
    return names


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_atomic(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
