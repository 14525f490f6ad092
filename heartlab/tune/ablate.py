"""Running an ablation (:mod:`heartlab.ablation`) on Ray: every variant x seed is a trial of the study trial
code (:func:`heartlab.tune.trial.run_trial`), all trained to the end (no scheduler).

``heartlab ablate FILE`` / ``python hypertune.py FILE --ablate``:

1. :func:`prepare_ablation` (driver, writes nothing) reads the ablation file and its base, checks the
   rows and keys, range-checks ``fit`` values, and dry-runs every variant (building its model, which also
   counts its parameters);
2. :func:`run_ablation` starts (or joins) Ray and runs the grid ``variant x seed``;
3. :func:`finish_ablation` writes ``ablation.parquet`` (one row per trial) and ``ablation.md`` (the
   Table-3-style summary, :func:`heartlab.results.ablation_markdown`) and prints the table.

An interrupted ablation continues with ``--resume`` as a study does.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from heartlab import results
from heartlab.ablation import AblationSettings, Variant, check_keys, current_value, default_report, read_settings, variants
from heartlab.config import ConfigText, bound, flatten_config, parse_text, resolve_include
from heartlab.errors import HeartlabError
from heartlab.files import write_atomic, write_json_atomic, write_text_atomic
from heartlab.provenance import add_session, provenance
from heartlab.search import SearchSpace, binding_lines, parse_space
from heartlab.tune.cli import DEFAULT_STORAGE
from heartlab.tune.prepare import TrialSpec, check_searched_fit_values, dry_run, study_location


@dataclass
class Ablation:
    """A checked ablation, ready to run."""

    config_path: Path
    name: str
    storage: Path
    settings: AblationSettings
    variants: list[Variant]
    study_config: ConfigText  # the base config, the ablation file, the ablation's bindings, --bind
    metric: str
    mode: str
    report: tuple[str, ...]
    num_threads: int
    parameters: dict[str, int]  # variant id -> model parameters
    base_values: dict[str, str]  # every changed key's value in the base, as gin text
    bindings: tuple[str, ...] = ()
    data: dict[str, Any] | None = None  # heartlab.data.Splits.summary() of the ablation's data

    @property
    def path(self) -> Path:
        return self.storage / self.name

    @property
    def expected_trials(self) -> int:
        return len(self.variants) * self.settings.seeds

    def spec(self) -> TrialSpec:
        return TrialSpec(self.study_config, SearchSpace({}), self.num_threads, str(self.path), {v.id: v.values for v in self.variants})

    def record(self) -> dict[str, Any]:
        """What ``ablation.json`` stores, so that ``--resume`` and the report need no config file."""
        return {
            "config": str(self.config_path),
            "bindings": list(self.bindings),
            "settings": {**asdict(self.settings), "report": list(self.report)},
            "variants": [{"id": v.id, "row": v.row, "values": v.values, "label": v.label} for v in self.variants],
            "metric": self.metric,
            "mode": self.mode,
            "num_threads": self.num_threads,
            "parameters": self.parameters,
            "base_values": self.base_values,
            "data": self.data,
            "expected_trials": self.expected_trials,
            **provenance(),
        }


def prepare_ablation(
    config: str | Path,
    *,
    name: str | None = None,
    storage: str | Path = DEFAULT_STORAGE,
    bindings: list[str] | tuple[str, ...] = (),
    cpus_per_trial: float | None = None,
    data=None,
) -> tuple[Ablation, Any]:
    """Read and check an ablation; returns ``(ablation, data)``. Writes nothing.

    Raises:
        HeartlabError: one line: a missing file or base, a bad row (empty, typo'd key, unequal lists, a
            key nothing reads), a setting out of range, a variant whose dry run fails.
    """
    from heartlab import metrics, train
    from heartlab.data import get_dataset, load_splits

    name, path = study_location(config, name, storage)
    config_path = Path(config)
    own = flatten_config(config_path)
    parse_text(own.plus(list(bindings), "--bind"))
    settings = read_settings()
    planned = variants(settings.rows)
    check_keys(settings.rows)
    try:
        base_path = resolve_include(settings.base, [config_path.resolve()])
    except HeartlabError:
        raise HeartlabError(
            f"{config_path}: ablation.base {settings.base!r} not found (looked beside the ablation file, in its parent "
            f"folder and in {Path.cwd()}); run the study first or point it at an experiment config"
        ) from None
    base = flatten_config(base_path)
    parse_text(base.then(own).plus(list(bindings), "--bind"))
    dataset = get_dataset(bound(load_splits, "dataset"))
    metric = settings.metric or train.bound("monitor")
    known = metrics.metric_names(dataset.classes)
    report = tuple(dict.fromkeys([metric, *(settings.report or default_report(dataset.classes, metric))]))
    for name_ in report:
        if name_ not in known:
            raise HeartlabError(f"ablation metric {name_!r} is not a validation metric of {dataset.name}; choose from: {', '.join(known)}")
    mode = metrics.default_mode(metric)
    lines = [
        "# ---- ablation bindings ----",
        f"fit.monitor = {metric!r}  # picks each trial's best epoch",
        f"fit.monitor_mode = {mode!r}",
    ]
    if settings.epochs is not None:
        lines.append(f"fit.epochs = {settings.epochs}  # ablation.epochs")
    study_config = base.then(own).plus(lines, "ablation binding").plus(list(bindings), "--bind")
    parse_text(study_config)
    train.check_configured(dataset.classes)
    base_values = {key: current_value(key) for v in planned for key in v.values}
    for row, changes in settings.rows.items():
        try:
            check_searched_fit_values(
                parse_space({key: f"choice({list(values)!r})" for key, values in changes.items()}), dataset.classes
            )
        except HeartlabError as exc:
            inner = str(exc).split(": ", 1)[-1]  # without "search.space[key] = 'choice(...)'"
            raise HeartlabError(f"ablation.rows[{row!r}]: {inner}") from None

    if data is None:
        data = load_splits()
    parameters = {}
    for variant in planned:
        space = parse_space({key: f"choice([{value!r}])" for key, value in variant.values.items()}) if variant.values else None
        if space is not None:
            try:
                dry_run(study_config, space, data)
            except HeartlabError as exc:
                raise HeartlabError(f"ablation variant {variant.id} ({variant.label}): {exc}") from None
        parameters[variant.id] = count_parameters(study_config, variant.values, len(data.classes))

    cpus = settings.cpus_per_trial if cpus_per_trial is None else cpus_per_trial
    ablation = Ablation(
        config_path=config_path.resolve(), name=name, storage=path.parent, settings=settings, variants=planned,
        study_config=study_config, metric=metric, mode=mode, report=report, num_threads=max(1, int(round(cpus))),
        parameters=parameters, base_values=base_values, bindings=tuple(bindings), data=data.summary(),
    )
    return ablation, data


def count_parameters(study_config: ConfigText, values: dict[str, Any], num_classes: int) -> int:
    """Parameters of the model a variant builds."""
    import gin

    from heartlab import train

    parse_text(study_config.plus(binding_lines(values), "variant"))
    net, _, _ = train.build_configured([1] * num_classes)
    gin.clear_config()
    return sum(p.numel() for p in net.parameters())


def prepare_resume(config: str | Path, *, name: str | None, storage: str | Path) -> tuple[Ablation, Any]:
    """The stored ablation at ``<storage>/<name>`` and its data."""
    from ray import tune

    from heartlab.ablation import AblationSettings
    from heartlab.data import load_splits

    name, path = study_location(config, name, storage)
    if not (path / results.ABLATION_FILE).is_file():
        raise HeartlabError(f"{path}: no ablation to resume (no {results.ABLATION_FILE}); start it without --resume")
    if not tune.Tuner.can_restore(str(path)):
        raise HeartlabError(f"{path}: the ablation stopped before Ray saved its state; delete the directory and start again")
    stored = results.read_json(path / results.ABLATION_FILE)
    study_config = ConfigText.of((path / results.ABLATION_CONFIG).read_text(), str(path / results.ABLATION_CONFIG))
    parse_text(study_config)
    data = load_splits()
    settings = AblationSettings(**{**stored["settings"], "report": tuple(stored["settings"]["report"])})
    planned = [Variant(v["id"], v["row"], v["values"]) for v in stored["variants"]]
    ablation = Ablation(
        config_path=Path(stored["config"]), name=name, storage=path.parent, settings=settings, variants=planned,
        study_config=study_config, metric=stored["metric"], mode=stored["mode"], report=tuple(settings.report),
        num_threads=int(stored["num_threads"]), parameters={k: int(v) for k, v in stored["parameters"].items()},
        base_values=stored.get("base_values", {}), data=stored.get("data"), bindings=tuple(stored.get("bindings", [])),
    )
    return ablation, data


def run_ablation(
    config: str | Path,
    *,
    name: str | None = None,
    storage: str | Path = DEFAULT_STORAGE,
    address: str | None = None,
    resume: bool = False,
    bindings: list[str] | tuple[str, ...] = (),
    cpus_per_trial: float | None = None,
) -> int:
    """Run or resume an ablation; 0 when every variant has a result, 1 when one has none, 130 when
    interrupted (continue it with the printed ``--resume`` command)."""
    from heartlab.tune.runner import ray_session, terminate_as_interrupt

    if resume:
        ablation, data = prepare_resume(config, name=name, storage=storage)
    else:
        ablation, data = prepare_ablation(config, name=name, storage=storage, bindings=bindings, cpus_per_trial=cpus_per_trial)
        if ablation.path.exists():
            raise HeartlabError(f"{ablation.path} already exists: continue that ablation with --resume, or pick another --name")
    print(f"ablation {ablation.name}: {len(ablation.variants)} variants x {ablation.settings.seeds} seeds = {ablation.expected_trials} trials")
    with ray_session(address):
        if not resume:
            ablation.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(ablation.path / results.ABLATION_CONFIG, ablation.study_config.text)
            write_json_atomic(ablation.path / results.ABLATION_FILE, ablation.record())
        started = time.perf_counter()
        with terminate_as_interrupt():
            grid = tuner(ablation, data, resume).fit()
        return finish_ablation(ablation, grid, time.perf_counter() - started, resume_command(ablation, address))


def tuner(ablation: Ablation, data, resume: bool):
    """The Ray Tune ``Tuner`` of an ablation: the grid variant x seed, no scheduler."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from heartlab.tune.runner import run_config
    from heartlab.tune.trial import run_trial

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, spec=ablation.spec()), {"cpu": ablation.settings.cpus_per_trial}
    )
    if resume:
        return tune.Tuner.restore(str(ablation.path), trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space={
            "variant": tune.grid_search([v.id for v in ablation.variants]),
            "seed": tune.grid_search(list(range(ablation.settings.seeds))),
        },
        tune_config=tune.TuneConfig(
            metric=ablation.metric,
            mode=ablation.mode,
            num_samples=1,
            search_alg=BasicVariantGenerator(random_state=0),
            reuse_actors=True,
            trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=run_config(ablation.name, ablation.storage, ablation.metric, ablation.mode),
    )


def finish_ablation(ablation: Ablation, grid, wall: float, resume: str) -> int:
    """Write ``ablation.parquet`` and ``ablation.md`` and print the table (exit code 0, or 1 when some
    variant has no result); report an interrupted ablation (exit code 130, nothing written)."""
    from heartlab.tune.report import error_message

    finished = grid.num_terminated + grid.num_errors
    complete = finished == len(grid) and len(grid) >= ablation.expected_trials
    plan_file = ablation.path / results.ABLATION_FILE
    write_json_atomic(plan_file, add_session(results.read_json(plan_file), wall, complete))
    if not complete:
        print(f"\nablation interrupted: {finished} of {ablation.expected_trials} trials finished. Continue it with:\n  {resume}", file=sys.stderr)
        return 130
    by_id = {v.id: v for v in ablation.variants}
    rows = []
    for result in grid:
        config = result.config or {}
        variant = by_id[config["variant"]]
        trial_dir = ablation.path / Path(result.path).name
        error = None if result.error is None else error_message(result.error)
        status = results.STATUS_ERROR if error else results.STATUS_COMPLETED
        row = results.summarize_trial(
            trial_dir, trial_id=trial_dir.name.removeprefix("trial_"), values={}, metric=ablation.metric,
            mode=ablation.mode, status=status, error=error,
        )
        rows.append({
            "variant": variant.id, "row": variant.row, "label": variant.label, "seed": int(config["seed"]),
            "parameters": ablation.parameters[variant.id], **row,
        })
    frame = results.ablation_frame(rows, [v.id for v in ablation.variants])
    write_atomic(ablation.path / results.ABLATION_TRIALS, frame.write_parquet)
    text = results.ablation_markdown(frame, results.read_json(ablation.path / results.ABLATION_FILE))
    write_text_atomic(ablation.path / results.ABLATION_TABLE, text + "\n")
    print("\n" + text)
    print(f"\n{len(rows)} trials in {wall:.1f} s wall time; results in {ablation.path}")
    errored = frame.filter(frame["status"] == results.STATUS_ERROR)
    for row in errored.iter_rows(named=True):
        print(f"  failed: {row['trial_dir']} ({row['variant']}, seed {row['seed']}): {row['error']}")
    scored = set(frame.filter(frame["score"].is_not_null())["variant"])
    return 0 if scored == set(by_id) else 1


def resume_command(ablation: Ablation, address: str | None) -> str:
    """The command that continues ``ablation``."""
    words = ["heartlab", "ablate", str(ablation.config_path), "--resume", "--name", ablation.name, "--storage", str(ablation.storage)]
    if address:
        words += ["--address", address]
    return shlex.join(words)
