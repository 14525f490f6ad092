"""The TensorBoard HParams *experiment* of a Ray Tune study: what was searched, over which domains.

A study writes one experiment summary at the root of its directory (:func:`write_study_experiment`); its
trials write only their HParams session (:class:`heartlab.tensorboard.RunWriter` with ``hparams=``) and
their ``best/<metric>`` scalars. ``tensorboard --logdir <storage>/<study>`` then reads the experiment from
the root run and shows exactly the searched keys, with the domains of the search space, instead of
inferring ~30 constant columns from the sessions.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from heartlab.search import Distribution, SearchSpace, gin_literal, to_python
from heartlab.tensorboard import BEST_PREFIX

# The study's experiment events file ends with this, so a resumed study finds the one it wrote.
EXPERIMENT_SUFFIX = ".hparams_experiment"
INTERVALS = ("uniform", "quniform", "loguniform", "qloguniform", "randint", "qrandint")


def _kind(values: list[Any]) -> str:
    """'bool', 'number' or 'string' if all ``values`` are of that type; 'text' (show as gin text) if not."""
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return "number"
    return "string" if all(isinstance(v, str) for v in values) else "text"


def hparam_info(key: str, distribution: Distribution) -> api_pb2.HParamInfo:
    """The :class:`HParamInfo` of one search-space entry, named ``key`` exactly as written.

    Ranges become a FLOAT64 ``domain_interval`` with the values Ray can draw: ``randint(lower, upper)``
    (and ``qrandint`` with ``q=1``) excludes ``upper`` in Ray, so the interval ends at ``upper - 1``; the
    q-distributions' quantisation keeps ``upper``. ``choice``/``grid_search`` become a ``domain_discrete``
    of numbers (FLOAT64), strings such as ``'@FocalLoss'`` (STRING) or booleans (BOOL); options of mixed
    types, lists, dicts or None become the STRING gin text of each option (:func:`gin_literal`).
    The distribution string is the description (a tooltip in the dashboard).
    """
    info = api_pb2.HParamInfo(name=key, description=distribution.text, differs=True)
    if distribution.name in INTERVALS:
        lower, upper = distribution.args[0], distribution.args[1]
        q = distribution.args[2] if len(distribution.args) > 2 else 1
        if distribution.name == "randint" or (distribution.name == "qrandint" and q == 1):
            upper -= 1  # Ray's randint excludes its upper bound
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_interval.min_value, info.domain_interval.max_value = float(lower), float(upper)
        return info
    options = [to_python(v) for v in distribution.args[0]]
    kind = _kind(options)
    if kind == "text":
        options = [gin_literal(v) for v in options]
    distinct = list(dict.fromkeys(options))  # one type per column, so 1 == 1.0 is one option
    info.differs = len(distinct) > 1
    field, info.type = {
        "bool": ("bool_value", api_pb2.DATA_TYPE_BOOL),
        "number": ("number_value", api_pb2.DATA_TYPE_FLOAT64),
    }.get(kind, ("string_value", api_pb2.DATA_TYPE_STRING))
    info.domain_discrete.values.extend(struct_pb2.Value(**{field: v}) for v in distinct)
    return info


def hparam_infos(space: SearchSpace) -> list[api_pb2.HParamInfo]:
    """One :func:`hparam_info` per searched key, in the order of ``search.space``."""
    return [hparam_info(key, distribution) for key, distribution in space.distributions.items()]


def session_values(space: SearchSpace, values: dict[str, Any]) -> dict[str, object]:
    """A trial's sampled values (gin key -> value) as its HParams session must hold them.

    Each value gets the type of its experiment column: options shown as gin text (mixed types, lists...)
    become their gin text, so that the dashboard's filters match them. A trial passes
    ``{**gin_bindings(config), **session_values(space, values)}`` as ``RunWriter(..., hparams=...)``.
    """
    out: dict[str, object] = {}
    for key, value in values.items():
        value = to_python(value)
        distribution = space.distributions.get(key)
        gin_text = distribution is not None and distribution.name not in INTERVALS and (
            _kind([to_python(v) for v in distribution.args[0]]) == "text"
        )
        out[key] = gin_literal(value) if gin_text else value
    return out


def experiment_summary(space: SearchSpace, metric_names: list[str]) -> summary_pb2.Summary:
    """The HParams experiment summary: the searched hparams and ``best/<name>`` validation metrics.

    Built as :func:`tensorboard.plugins.hparams.summary_v2.hparams_config_pb` builds it (whose ``HParam``
    domains cannot carry these protos, nor ``differs``); ``summary.experiment_pb`` needs TensorFlow.
    """
    metric_infos = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"{BEST_PREFIX}{name}"), dataset_type=api_pb2.DATASET_VALIDATION)
        for name in metric_names
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=hparam_infos(space), metric_infos=metric_infos, time_created_secs=time.time()
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.EXPERIMENT_TAG,
        metadata=metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def write_study_experiment(study_dir: str | Path, space: SearchSpace, metric_names: list[str]) -> Path:
    """Write the study's experiment summary into an events file directly in ``study_dir``; its path.

    ``metric_names`` are validation metric names (:func:`heartlab.metrics.metric_names`); the experiment
    lists ``best/<name>`` for each. Skipped when ``study_dir`` already holds one (a resumed study: its
    search space cannot change), which is then returned: the root run never holds two experiments.
    """
    study_dir = Path(study_dir)
    existing = sorted(study_dir.glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"))
    if existing:
        return existing[0]
    study_dir.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(log_dir=str(study_dir), filename_suffix=EXPERIMENT_SUFFIX) as writer:
        writer.file_writer.add_summary(experiment_summary(space, metric_names))
    return sorted(study_dir.glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"))[0]
