"""One Ray trial, run inside a Ray worker: the study config plus the sampled values, trained by ``train.fit``.

Kept small on purpose: a worker imports this module, the trainer and Ray's reporting API, nothing of the
driver (command line, study preparation, tables).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from heartlab import runs
from heartlab.config import parse_text
from heartlab.files import write_json_atomic
from heartlab.search import binding_lines, to_python
from heartlab.tune.hparams import session_values
from heartlab.tune.prepare import TrialSpec


def run_trial(config: dict[str, Any], *, data, spec: TrialSpec) -> None:
    """One Ray trial: the study config plus this trial's sampled values (or, in an ablation, its
    variant's values and seed), trained by ``train.fit``.

    Writes into the trial directory (``config.gin``, TensorBoard events, ``best.pt``, and
    ``fit_result.json`` if training ends by itself); reports every epoch to Ray with the best checkpoint.
    """
    from ray import tune

    from heartlab import train

    # Ray 2.60's get_trial_dir() is a staging folder on the driver's node that Ray copies into the storage
    # now and then; writing straight into <storage>/<name>/<trial>/ works on any node that sees the
    # storage, and nothing is lost when the driver is killed between two copies.
    trial_dir = Path(spec.study_dir) / Path(tune.get_context().get_trial_dir()).name
    trial_dir.mkdir(parents=True, exist_ok=True)
    names = spec.space.param_names()
    values = {names[name]: to_python(value) for name, value in config.items() if name in names}
    if spec.variants is not None:  # an ablation: the variant's values and the seed
        values = {**spec.variants[config["variant"]], "fit.seed": int(config["seed"])}
    runs.clear_attempt(trial_dir)
    parse_text(spec.study_config.plus(binding_lines(values), "sampled"))
    started = time.perf_counter()

    threads = ThreadShare(spec.num_threads)

    def report(epoch: train.EpochReport) -> None:
        row = {**epoch.metrics, "epoch": epoch.epoch, "fit_seconds": time.perf_counter() - started, "threads": threads.now}
        threads.update()
        if not epoch.is_best:
            tune.report(row)
            return
        with tempfile.TemporaryDirectory(prefix="heartlab-ckpt-") as folder:
            shutil.copy2(epoch.checkpoint, Path(folder) / epoch.checkpoint.name)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))

    result = train.fit(
        data=data, run_dir=trial_dir, on_epoch_end=report, evaluate_test=False, num_threads=threads.now,
        hparams=session_values(spec.space, values),
    )
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_metrics": result.best_metrics,
        "fit_seconds": time.perf_counter() - started,
    }
    write_json_atomic(trial_dir / runs.FIT_RESULT, summary)


class ThreadShare:
    """The torch threads of a trial: its CPU share, plus the node's idle CPUs while no other trial wants them.

    At the end of a study fewer trials than slots are left, and a trial alone would keep the other cores
    idle. After every epoch the trial asks Ray how many CPUs are unreserved and takes them for its next
    epoch (torch's intra-op threads can change between epochs); when a new trial starts and reserves them,
    it gives them back at its next epoch end. Only on a single-node Ray: on a cluster the free CPUs may be
    on another node. ``HEARTLAB_SHARE_IDLE_CPUS=0`` turns this off (``scripts/bench_study.py`` compares).
    """

    def __init__(self, own: int):
        import os

        import ray

        self.own = self.now = own
        self.enabled = os.environ.get("HEARTLAB_SHARE_IDLE_CPUS", "1") != "0" and sum(bool(n.get("Alive")) for n in ray.nodes()) == 1
        self.node_cpus = int(ray.cluster_resources().get("CPU", own)) if self.enabled else own

    def update(self) -> None:
        if not self.enabled:
            return
        import ray
        import torch

        free = int(ray.available_resources().get("CPU", 0.0))
        wanted = max(self.own, min(self.node_cpus, self.own + free))
        if wanted != self.now:
            torch.set_num_threads(wanted)
            self.now = wanted
