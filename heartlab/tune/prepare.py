"""Preparing a study on the driver: read the config and its search section, check everything, dry-run.

Nothing here writes a file or starts Ray: a study that fails here leaves no trace. The result is a
:class:`Study` (what the runner needs) and the loaded data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger

from heartlab import results
from heartlab.config import ConfigText, bound, flatten_config, parse_text
from heartlab.errors import HeartlabError
from heartlab.files import check_output_dir, check_plain_name
from heartlab.provenance import provenance
from heartlab.search import SearchSettings, SearchSpace, binding_lines, parse_space
from heartlab.tune.cli import DEFAULT_STORAGE


@dataclass(frozen=True)
class TrialSpec:
    """What every trial needs besides its sampled config and the data (small; sent with the trainable)."""

    study_config: ConfigText  # the experiment file with includes inlined, plus the study's bindings
    space: SearchSpace  # the searched keys (Ray parameter names: space.param_names())
    num_threads: int  # torch threads = the trial's CPU share
    study_dir: str  # <storage>/<name>: trials write straight into <study_dir>/<trial dir name>/
    # an ablation's variants (id -> binding key -> value): a trial's config is then {'variant', 'seed'}
    variants: dict[str, dict[str, Any]] | None = None


@dataclass
class Study:
    """A checked study, ready to run."""

    config_path: Path
    name: str
    storage: Path
    settings: SearchSettings
    space: SearchSpace
    study_config: ConfigText
    max_epochs: int
    num_threads: int
    expected_trials: int
    bindings: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)  # heartlab.data.Splits.summary() of the study's data

    @property
    def path(self) -> Path:
        return self.storage / self.name

    def spec(self) -> TrialSpec:
        return TrialSpec(self.study_config, self.space, self.num_threads, str(self.path))

    def record(self) -> dict[str, Any]:
        """What ``study.json`` stores, so that ``--resume`` can rebuild the study without the config file."""
        return {
            "config": str(self.config_path),
            "bindings": list(self.bindings),
            "settings": asdict(self.settings),
            "param_names": self.space.param_names(),
            "max_epochs": self.max_epochs,
            "num_threads": self.num_threads,
            "expected_trials": self.expected_trials,
            "data": self.data,
            **provenance(),
        }


def study_location(config: str | Path, name: str | None, storage: str | Path) -> tuple[str, Path]:
    """The study's name (default: the config's file name) and its directory, both checked; creates nothing."""
    name = check_plain_name(name or Path(config).stem, "--name")
    storage = check_output_dir(storage, "--storage")
    path = storage.resolve() / name
    check_output_dir(path, "--storage/--name")
    return name, path


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
            distribution, unknown metric, empty space), a ``fit`` or ``load_splits`` setting out of range,
            bad data files, or a dry run that fails.
    """
    from heartlab import metrics, search, train
    from heartlab.data import get_dataset, load_splits

    name, path = study_location(config, name, storage)
    config_path = Path(config)
    experiment = flatten_config(config_path)
    parse_text(experiment.plus(list(bindings), "--bind"))
    settings = search.read_settings()
    settings = replace(
        settings,
        num_samples=settings.num_samples if num_samples is None else num_samples,
        cpus_per_trial=settings.cpus_per_trial if cpus_per_trial is None else cpus_per_trial,
    )
    search.check_settings(settings)
    space = parse_space(settings.space)
    search.check_searchable(space)
    if settings.algorithm == "optuna":
        if space.has_grid:
            raise HeartlabError("search section: grid_search cannot be used with search.algorithm = 'optuna'")
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise HeartlabError("search.algorithm = 'optuna' needs the optuna extra: pip install 'heartlab[optuna]'") from None

    dataset = get_dataset(bound(load_splits, "dataset"))
    search.check_metric(settings.metric, metrics.metric_names(dataset.classes))

    # The study config: the experiment file as one text, then the study's own bindings, then --bind
    # (again, so that they keep precedence over the study's bindings).
    study_lines = [
        "# ---- study bindings (hypertune) ----",
        f"fit.monitor = {settings.metric!r}  # the study metric also picks each trial's best epoch",
        f"fit.monitor_mode = {settings.mode!r}",
    ]
    if settings.max_epochs is not None:
        study_lines.append(f"fit.epochs = {settings.max_epochs}  # search.max_epochs")
    study_config = experiment.plus(study_lines, "study binding").plus(list(bindings), "--bind")
    parse_text(study_config)
    loop = train.check_configured(dataset.classes)
    check_searched_fit_values(space, dataset.classes)
    if settings.scheduler == "asha" and settings.grace_period > loop.epochs:
        raise HeartlabError(
            f"search.grace_period ({settings.grace_period}) exceeds the epochs per trial ({loop.epochs}): "
            "lower it or raise fit.epochs / search.max_epochs"
        )

    if data is None:
        data = load_splits()
    dry_run(study_config, space, data)

    grid_points = math.prod(len(d.args[0]) for d in space.distributions.values() if d.is_grid)
    study = Study(
        config_path=config_path.resolve(),
        name=name,
        storage=path.parent,
        settings=settings,
        space=space,
        study_config=study_config,
        max_epochs=loop.epochs,
        num_threads=max(1, int(round(settings.cpus_per_trial))),
        expected_trials=settings.num_samples * grid_points,
        bindings=tuple(bindings),
        data=data.summary(),
    )
    return study, data


def check_searched_fit_values(space: SearchSpace, classes: tuple[str, ...]) -> None:
    """Range-check every value the space can give a ``fit`` setting (each choice, both bounds)."""
    import gin

    from heartlab import train
    from heartlab.search import check_binding_key, values_to_check

    for key in space.keys:
        _, selector, arg = check_binding_key(key)
        if selector != "heartlab.train.fit" or arg in ("model", "loss", "optimizer"):
            continue  # not a fit setting, or a configurable the dry run builds
        for value in values_to_check(space.distributions[key]):
            with gin.unlock_config():
                gin.bind_parameter(f"fit.{arg}", value)
            try:
                train.check_configured(classes)
            except HeartlabError as exc:
                raise HeartlabError(f"search.space[{key!r}] = {space.distributions[key].text!r}: {exc}") from None


def prepare_resume(config: str | Path, *, name: str | None, storage: str | Path, bindings, num_samples, cpus_per_trial):
    """The stored study at ``<storage>/<name>`` (name defaults to the config's file name) and its data."""
    from ray import tune

    from heartlab.data import load_splits

    name, path = study_location(config, name, storage)
    if not (path / results.STUDY_FILE).is_file():
        raise HeartlabError(f"{path}: no study to resume (no {results.STUDY_FILE}); start it without --resume")
    if not tune.Tuner.can_restore(str(path)):
        raise HeartlabError(
            f"{path}: the study stopped before Ray saved its state, so it cannot be resumed; "
            "delete the directory and start again"
        )
    stored = results.read_study_settings(path)
    study_config = ConfigText.of((path / results.STUDY_CONFIG).read_text(), str(path / results.STUDY_CONFIG))
    try:
        current = flatten_config(config).text
    except HeartlabError:
        current = None
    if current is None or not study_config.text.startswith(current) or list(bindings) != stored.get("bindings", []):
        logger.warning(f"the config or --bind differ from the study's; resuming with the stored {path / results.STUDY_CONFIG}")
    if num_samples is not None or cpus_per_trial is not None:
        logger.warning("--num-samples and --cpus-per-trial are ignored on --resume (the study keeps its settings)")
    parse_text(study_config)
    data = load_splits()
    settings = SearchSettings(**stored["settings"])
    study = Study(
        config_path=Path(stored["config"]),
        name=name,
        storage=path.parent,
        settings=settings,
        space=parse_space(settings.space),
        study_config=study_config,
        max_epochs=int(stored["max_epochs"]),
        num_threads=int(stored["num_threads"]),
        expected_trials=int(stored["expected_trials"]),
        bindings=tuple(stored.get("bindings", [])),
        data=stored.get("data", {}),
    )
    return study, data


def dry_run(study_config: ConfigText, space: SearchSpace, data) -> dict[str, Any]:
    """Build model, loss, optimizer and the training options (augmentation, operating point) for one point of
    the space and push two beats through the model.

    The point is :meth:`SearchSpace.first_point` (first options, lower bounds): found without importing
    Ray, which the runner imports while Ray starts.

    Also checks that every searched key is read by something this experiment builds (or is a parameter
    of ``fit``): a key of an unused configurable would silently change nothing.

    Returns the point. Raises HeartlabError naming the point and the failure.
    """
    import gin
    import torch

    from heartlab import train
    from heartlab.build import build
    from heartlab.evaluation import check_inputs, model_inputs

    point = space.first_point()
    shown = ", ".join(f"{k} = {v!r}" for k, v in point.items())
    parse_text(study_config.plus(binding_lines(point), "sampled"))
    num_classes = len(data.classes)
    try:
        model_fn, loss_fn, optimizer_fn = train.bound("model"), train.bound("loss"), train.bound("optimizer")
        model, loss, _ = build(model_fn, loss_fn, optimizer_fn, data.train.class_counts(num_classes).tolist())
        train.training_options(tuple(data.classes))  # augmentation, operating point, selection: read by fit
        check_inputs(model, data)
        model.eval()
        with torch.no_grad():
            logits = model(*model_inputs(model, data.train, slice(0, 2)))
            loss(logits, data.train.y[:2])
        if tuple(logits.shape) != (2, num_classes):
            raise HeartlabError(f"the model returned logits of shape {tuple(logits.shape)}, expected (2, {num_classes})")
    except HeartlabError as exc:
        raise HeartlabError(f"dry run ({shown}): {exc}") from None
    except Exception as exc:  # the model's own checks (ValueError, shape errors from torch, ...)
        raise HeartlabError(f"dry run ({shown}): {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    check_keys_used(space, (model_fn, loss_fn, optimizer_fn))
    gin.clear_config()
    return point


def check_keys_used(space: SearchSpace, built: tuple[Any, Any, Any]) -> None:
    """Every searched key must be read by a configurable the dry run called (or be a ``fit`` parameter,
    or belong to a configurable the search itself chooses); else it would silently change nothing."""
    import gin

    from heartlab.search import check_binding_key

    operative = gin.config._OPERATIVE_CONFIG  # noqa: SLF001 (which configurables were called, and with what)
    chosen = _referenced_selectors(space)
    for key in space.keys:
        scope, selector, arg = check_binding_key(key)
        if selector == "heartlab.train.fit" or selector in chosen:
            continue
        used = any(
            op_selector == selector
            and arg in values
            and (not scope or op_scope == scope or op_scope.startswith(scope + "/"))
            for (op_scope, op_selector), values in operative.items()
        )
        if not used:
            model_fn, loss_fn, optimizer_fn = (getattr(f, "__name__", f) for f in built)
            raise HeartlabError(
                f"search.space key {key!r} has no effect in this experiment: nothing it builds reads that "
                f"parameter (model {model_fn}, loss {loss_fn}, optimizer {optimizer_fn})"
            )


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
