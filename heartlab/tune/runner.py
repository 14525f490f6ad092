"""Running a prepared study: start (or join) Ray, build the Tuner, fit it, hand the results to the report.

How a study uses Ray Tune 2.60 is explained in the README ("How a study uses Ray Tune 2.60").
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from heartlab import results
from heartlab.errors import HeartlabError
from heartlab.files import write_json_atomic, write_text_atomic
from heartlab.metrics import metric_names
from heartlab.tune.hparams import write_study_experiment
from heartlab.tune.prepare import DEFAULT_STORAGE, Study, prepare_resume, prepare_study
from heartlab.tune.ray_local import start_local_ray, stop_local_ray
from heartlab.tune.report import finish, resume_command
from heartlab.tune.trial import run_trial

# Ray's default TensorBoardX logger would write a second copy of every curve next to the ones train.fit
# writes; this switches all of Ray's automatic loggers off and the RunConfig adds back the CSV and JSON ones.
RAY_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Save the study state at least every 2 s (Ray's default: >= 10 s), so that a killed driver loses
    # little: a trial that finished before the last save is never rerun by --resume.
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    # Keeping one checkpoint per trial makes Ray save the study state at every new best epoch, which is
    # what resume wants; Ray warns about that frequency, needlessly for studies of this size.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


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
    130 when it was interrupted (continue it with the printed ``--resume`` command)."""
    if resume:
        study, data = prepare_resume(
            config, name=name, storage=storage, bindings=bindings, num_samples=num_samples, cpus_per_trial=cpus_per_trial
        )
    else:
        study, data = prepare_study(
            config, num_samples=num_samples, name=name, storage=storage, bindings=bindings, cpus_per_trial=cpus_per_trial
        )
        if study.path.exists():
            raise HeartlabError(f"{study.path} already exists: continue that study with --resume, or pick another --name")

    with ray_session(address):
        if not resume:
            write_study_files(study)
            write_study_experiment(study.path, study.space, metric_names(data.classes))
        started = time.perf_counter()
        with terminate_as_interrupt():
            grid = tuner(study, data, resume).fit()
        return finish(study, data, grid, time.perf_counter() - started, resume_command(study, address))


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for one study or ablation: :data:`RAY_ENV` set (where not set already), Ray started or joined,
    and shut down afterwards whatever happens."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    start_ray(address)
    try:
        yield
    finally:
        stop_ray()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill PID``, a batch scheduler's pre-emption) stops a running ``Tuner.fit`` as Ctrl+C does:
    Ray Tune saves the study state one last time, the session's wall time is added to the record and the
    ``--resume`` command is printed (exit code 130). Without it SIGTERM ends the driver on the spot and the
    session's wall time is lost. A second SIGTERM ends the process at once. Only the main thread can
    install signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGINT)  # Ray Tune's handler during fit(): stop, save the state, return

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_ray(address: str | None) -> None:
    """Join the cluster at ``address``, or start a local Ray instance (cleaning up a dead driver's)."""
    import ray

    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address)
        else:
            start_local_ray()
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = ""
        if address and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = (
                " (a cluster with token authentication, the default since Ray 2.59, needs RAY_AUTH_MODE=token "
                "and its token in RAY_AUTH_TOKEN or ~/.ray/auth_token; see README)"
            )
        raise HeartlabError(f"cannot start or join {where}: {' '.join(str(exc).split())}{hint}") from None


def stop_ray() -> None:
    """Shut Ray down (and forget this driver's local processes, see :mod:`heartlab.tune.ray_local`)."""
    stop_local_ray()


def write_study_files(study: Study) -> None:
    """``study.gin`` (what every trial parses) and ``study.json`` (what ``--resume`` needs)."""
    study.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(study.path / results.STUDY_CONFIG, study.study_config.text)
    write_json_atomic(study.path / results.STUDY_FILE, study.record())


def tuner(study: Study, data, resume: bool):
    """The Ray Tune ``Tuner`` of a study (restored from its directory on ``resume``)."""
    from ray import tune

    settings = study.settings
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, spec=study.spec()), {"cpu": settings.cpus_per_trial}
    )
    if resume:
        # Errored trials run once more, in their own directory and under their own id (restart_errored
        # would replace them by new trials). run_trial starts every attempt from epoch 1.
        return tune.Tuner.restore(str(study.path), trainable, resume_unfinished=True, resume_errored=True)

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
        run_config=run_config(study.name, study.storage, settings.metric, settings.mode),
    )


def run_config(name: str, storage: Path, metric: str, mode: str):
    """The ``RunConfig`` of a study or an ablation: its directory, Ray's CSV and JSON logs, the best
    checkpoint of each trial kept, no automatic retries."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return tune.RunConfig(
        name=name,
        storage_path=str(storage),
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=mode),
        failure_config=tune.FailureConfig(max_failures=0),
        verbose=1,
    )
