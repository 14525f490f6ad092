"""The search section of an experiment's .gin file, turned into a Ray Tune search space.

An experiment file may end with a search section::

    search.metric = 'val/recall_macro'    # a metric train.fit reports (heartlab.metrics.metric_names)
    search.mode = 'max'
    search.num_samples = 24
    search.space = {
        'ResNet1D.channels': 'choice([16, 32, 64])',
        'torch.optim.AdamW.lr': 'loguniform(1e-4, 3e-3)',
        'train/FocalLoss.gamma': 'uniform(0.0, 3.0)',    # scoped keys work too
    }

Each key of ``search.space`` is a gin binding key (``[scope/]Configurable.parameter``); each value is a
string naming one of Ray Tune's sampling functions. The strings are parsed with :mod:`ast` against a
whitelist (:data:`DISTRIBUTIONS`) and their arguments must be literals: nothing is ever ``eval``-ed.

This module only reads and checks the section; :mod:`heartlab.tune` runs the study. ``search`` is a gin
configurable: a search section starts with ``import heartlab.search`` so that the file also parses under
``heartlab train``, which ignores the section.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import gin
from gin import config_parser

from heartlab.errors import HeartlabError

# name -> (positional parameter names, optional parameter names). The functions themselves are
# looked up on ray.tune when the space is built, so reading a search section does not import Ray.
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform": (("lower", "upper"), ()),
    "quniform": (("lower", "upper", "q"), ()),
    "loguniform": (("lower", "upper"), ()),
    "qloguniform": (("lower", "upper", "q"), ()),
    "randint": (("lower", "upper"), ()),
    "qrandint": (("lower", "upper"), ("q",)),
    "choice": (("categories",), ()),
    "grid_search": (("values",), ()),
}

SCHEDULERS = ("asha", "none")
ALGORITHMS = ("random", "optuna")
MODES = ("max", "min")


@dataclass(frozen=True)
class SearchSettings:
    """Everything the search section says; see :func:`search` for the meaning of each field."""

    space: dict[str, str]
    metric: str = "val/recall_macro"
    mode: str = "max"
    num_samples: int = 16
    algorithm: str = "random"
    scheduler: str = "asha"
    grace_period: int = 2
    reduction_factor: float = 3.0
    max_epochs: int | None = None
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int | None = None
    seed: int | None = None


@gin.configurable("search")
def search(
    space: dict[str, str] | None = None,
    metric: str = "val/recall_macro",
    mode: str = "max",
    num_samples: int = 16,
    algorithm: str = "random",
    scheduler: str = "asha",
    grace_period: int = 2,
    reduction_factor: float = 3.0,
    max_epochs: int | None = None,
    cpus_per_trial: float = 1.0,
    max_concurrent_trials: int | None = None,
    seed: int | None = None,
) -> SearchSettings:
    """The search section of an experiment file (bound as ``search.<name> = ...``).

    Args:
        space: gin binding key -> distribution string, e.g.
            ``{'ResNet1D.channels': 'choice([16, 32, 64])'}``. Required: a study needs something to search.
        metric: the validation metric trials are ranked by; one of the names ``train.fit`` reports
            (``val/recall_macro``, ``val/f1_macro``, ``val/loss``, ``val/recall/<class>``, ...).
        mode: ``'max'`` or ``'min'``: whether a larger ``metric`` is better.
        num_samples: trials to run (with ``grid_search`` entries: samples per grid point, as in Ray).
        algorithm: ``'random'`` (Ray's random/grid search) or ``'optuna'`` (TPE; needs the ``optuna``
            extra, and no ``grid_search`` entries).
        scheduler: ``'asha'`` stops weak trials early at rungs ``grace_period * reduction_factor**k``
            epochs; ``'none'`` trains every trial for all its epochs.
        grace_period: epochs every trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the best ``1/reduction_factor`` of the trials at each rung.
        max_epochs: epochs per trial, bound as ``fit.epochs``; ``None`` keeps the experiment's
            ``fit.epochs``.
        cpus_per_trial: CPUs Ray reserves for each trial; the trial's torch thread count follows it
            (``--cpus-per-trial`` overrides).
        max_concurrent_trials: cap on trials running at once; ``None`` lets the CPUs decide.
        seed: seed of the search algorithm's sampling, for a reproducible sequence of trials.
    """
    if space is None:
        space = {}
    return SearchSettings(
        space=dict(space),
        metric=metric,
        mode=mode,
        num_samples=num_samples,
        algorithm=algorithm,
        scheduler=scheduler,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        max_epochs=max_epochs,
        cpus_per_trial=cpus_per_trial,
        max_concurrent_trials=max_concurrent_trials,
        seed=seed,
    )


def read_settings() -> SearchSettings:
    """The search section of the gin config parsed so far, checked field by field (not yet the keys)."""
    try:
        settings = search()
    except (TypeError, ValueError) as exc:
        raise HeartlabError(f"search section: {exc}") from None
    check_settings(settings)
    return settings


def check_settings(settings: SearchSettings) -> None:
    """Raise :class:`HeartlabError` for a search section whose fields make no sense."""

    def fail(problem: str) -> HeartlabError:
        return HeartlabError(f"search section: {problem}")

    if not isinstance(settings.space, dict) or not settings.space:
        raise fail(
            "search.space is empty or missing: bind it to a dict such as "
            "{'ResNet1D.channels': 'choice([16, 32, 64])'}"
        )
    for key, value in settings.space.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise fail(f"search.space entries must be 'key': 'distribution' strings, got {key!r}: {value!r}")
    if settings.mode not in MODES:
        raise fail(f"search.mode must be 'max' or 'min', got {settings.mode!r}")
    if settings.algorithm not in ALGORITHMS:
        raise fail(f"search.algorithm must be one of {', '.join(ALGORITHMS)}, got {settings.algorithm!r}")
    if settings.scheduler not in SCHEDULERS:
        raise fail(f"search.scheduler must be one of {', '.join(SCHEDULERS)}, got {settings.scheduler!r}")
    if not _is_int(settings.num_samples) or settings.num_samples < 1:
        raise fail(f"search.num_samples must be a whole number >= 1, got {settings.num_samples!r}")
    if not _is_int(settings.grace_period) or settings.grace_period < 1:
        raise fail(f"search.grace_period must be a whole number of epochs >= 1, got {settings.grace_period!r}")
    if not isinstance(settings.reduction_factor, (int, float)) or settings.reduction_factor < 2:
        raise fail(f"search.reduction_factor must be a number >= 2, got {settings.reduction_factor!r}")
    if settings.max_epochs is not None and (not _is_int(settings.max_epochs) or settings.max_epochs < 1):
        raise fail(f"search.max_epochs must be a whole number >= 1 or None, got {settings.max_epochs!r}")
    if not isinstance(settings.cpus_per_trial, (int, float)) or settings.cpus_per_trial <= 0:
        raise fail(f"search.cpus_per_trial must be a positive number, got {settings.cpus_per_trial!r}")
    if settings.max_concurrent_trials is not None and (
        not _is_int(settings.max_concurrent_trials) or settings.max_concurrent_trials < 1
    ):
        raise fail(
            f"search.max_concurrent_trials must be a whole number >= 1 or None, "
            f"got {settings.max_concurrent_trials!r}"
        )
    if settings.seed is not None and not _is_int(settings.seed):
        raise fail(f"search.seed must be a whole number or None, got {settings.seed!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------
# Distribution strings
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One parsed distribution string: the function name and its literal arguments."""

    text: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return self.name == "grid_search"

    def to_ray(self) -> Any:
        """The Ray Tune domain (or ``{'grid_search': [...]}``) this string describes."""
        from ray import tune

        return getattr(tune, self.name)(*self.args, **self.kwargs)

    def sample(self, seed: int = 0) -> Any:
        """One value drawn by Ray's own sampler (for the dry run); grids give their first value."""
        if self.is_grid:
            return to_python(self.args[0][0])
        import numpy as np

        return to_python(self.to_ray().sample(random_state=np.random.default_rng(seed)))


def parse_distribution(text: str, key: str = "") -> Distribution:
    """Parse one distribution string such as ``'loguniform(1e-4, 3e-3)'``.

    Only the functions in :data:`DISTRIBUTIONS` are accepted, with literal arguments (numbers, strings,
    lists, tuples, booleans, ``None``). Argument counts and ranges are checked here so that a bad string
    fails before Ray starts.

    Raises:
        HeartlabError: naming ``key``, the string and what is wrong with it.
    """
    where = f"search.space[{key!r}]" if key else "distribution"
    allowed = ", ".join(DISTRIBUTIONS)

    def fail(problem: str) -> HeartlabError:
        return HeartlabError(f"{where} = {text!r}: {problem}")

    if not isinstance(text, str):
        raise fail(f"must be a string such as 'uniform(0.0, 1.0)' (one of {allowed})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise fail(f"not a valid expression ({exc.msg}); expected e.g. 'uniform(0.0, 1.0)'") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise fail(f"expected a call to one of {allowed}")
    name = call.func.id
    if name not in DISTRIBUTIONS:
        near = difflib.get_close_matches(name, DISTRIBUTIONS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise fail(f"unknown distribution {name!r}{hint}; allowed: {allowed}")
    try:
        args = tuple(ast.literal_eval(node) for node in call.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise fail("arguments must be literals (numbers, strings, lists), not expressions or names") from None
    if any(kw.arg is None for kw in call.keywords):
        raise fail("'**' arguments are not allowed")

    required, optional = DISTRIBUTIONS[name]
    known = required + optional
    for kw in kwargs:
        if kw not in known:
            raise fail(f"{name}() has no argument {kw!r} (arguments: {', '.join(known)})")
    # Fold keywords into positions so that the checks below see one shape.
    values = list(args)
    for i, pname in enumerate(known):
        if pname in kwargs:
            if i < len(values):
                raise fail(f"{name}() got {pname!r} twice")
            if i > len(values):
                raise fail(f"{name}(): give {', '.join(known[:i])} before {pname!r}")
            values.append(kwargs[pname])
    if not len(required) <= len(values) <= len(known):
        shape = f"{name}({', '.join(required)}{''.join(f'[, {p}]' for p in optional)})"
        raise fail(f"expected {shape}, got {len(values)} argument(s)")

    _check_arguments(name, values, fail)
    return Distribution(text=text, name=name, args=tuple(values))


def _check_arguments(name: str, values: list[Any], fail) -> None:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if name in ("choice", "grid_search"):
        (options,) = values
        if not isinstance(options, (list, tuple)) or not options:
            raise fail(f"{name}() takes a non-empty list, e.g. {name}([16, 32, 64])")
        return
    lower, upper = values[0], values[1]
    if not (number(lower) and number(upper)):
        raise fail("lower and upper bounds must be finite numbers")
    if name in ("randint", "qrandint"):
        if not (_is_int(lower) and _is_int(upper)):
            raise fail(f"{name}() bounds must be whole numbers")
        if lower >= upper:
            raise fail(f"lower bound {lower} must be below upper bound {upper}")
    elif lower >= upper:
        raise fail(f"lower bound {lower} must be below upper bound {upper}")
    if name in ("loguniform", "qloguniform") and lower <= 0:
        raise fail("log-uniform bounds must be positive")
    if len(values) > 2 and name in ("quniform", "qloguniform", "qrandint"):
        q = values[2]
        if not number(q) or q <= 0:
            raise fail("the quantum q must be a positive number")
        if name == "qrandint" and not _is_int(q):
            raise fail("qrandint() quantum q must be a whole number")


# ---------------------------------------------------------------------------------------------------
# Binding keys
# ---------------------------------------------------------------------------------------------------


def known_binding_keys() -> list[str]:
    """Every ``Configurable.parameter`` gin currently knows, in short and module-qualified form."""
    keys: set[str] = set()
    for selector, configurable in gin.config._REGISTRY.items():  # noqa: SLF001 (gin has no public listing)
        for param in _bindable_parameters(configurable):
            keys.add(f"{configurable.name}.{param}")
            keys.add(f"{selector}.{param}")
    return sorted(keys)


def _bindable_parameters(configurable: Any) -> list[str]:
    target = configurable.wrapped
    target = target.__init__ if inspect.isclass(target) else target
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    names = [
        p.name
        for p in params
        if p.name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if configurable.allowlist:
        names = [n for n in names if n in configurable.allowlist]
    if configurable.denylist:
        names = [n for n in names if n not in configurable.denylist]
    return names


def check_binding_key(key: str) -> tuple[str, str, str]:
    """Check that ``key`` names a bindable parameter of a registered gin configurable.

    Returns:
        ``(scope, complete_selector, parameter)``, e.g. ``('train', 'heartlab.models.resnet1d.ResNet1D',
        'channels')``.

    Raises:
        HeartlabError: naming the nearest valid key.
    """
    if not isinstance(key, str) or not key.strip():
        raise HeartlabError(f"search.space key {key!r} must be a 'Configurable.parameter' string")
    key = key.strip()
    from heartlab.config import register_configurables

    register_configurables()  # the registry must hold every model, loss and optimizer before we judge
    try:
        scope, selector, arg_name = config_parser.parse_binding_key(key)
    except (ValueError, SyntaxError):
        raise HeartlabError(
            f"search.space key {key!r} is not a binding key: write '[scope/]Configurable.parameter', "
            "e.g. 'ResNet1D.channels'"
        ) from None
    try:
        parsed = gin.config.ParsedBindingKey.parse((scope, selector, arg_name))
    except ValueError as exc:
        prefix = f"{scope}/" if scope else ""
        configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
        if configurable is not None:
            params = _bindable_parameters(configurable)
            near = difflib.get_close_matches(arg_name, params, n=1, cutoff=0.6)
            if near:
                hint = f"; did you mean '{prefix}{selector}.{near[0]}'?"
            else:
                hint = f"; {selector} takes: {', '.join(params)}"
        else:
            wanted, known = f"{selector}.{arg_name}", known_binding_keys()
            near = difflib.get_close_matches(wanted, known, n=1, cutoff=0.5)
            if near:
                hint = f"; did you mean '{prefix}{near[0]}'?"
            else:
                nearest = difflib.get_close_matches(wanted, known, n=1, cutoff=0.0)
                hint = f"; the nearest valid key is '{prefix}{nearest[0]}'" if nearest else ""
        reason = " ".join(str(exc).split())
        raise HeartlabError(f"search.space key {key!r} is not a configurable parameter ({reason}){hint}") from None
    return parsed.scope, parsed.complete_selector, parsed.arg_name


# ---------------------------------------------------------------------------------------------------
# The space
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """The checked ``search.space``: binding key (as written) -> parsed distribution."""

    distributions: dict[str, Distribution]

    @property
    def keys(self) -> list[str]:
        return list(self.distributions)

    @property
    def has_grid(self) -> bool:
        return any(d.is_grid for d in self.distributions.values())

    def param_names(self) -> dict[str, str]:
        """Ray-side parameter name -> gin key. Ray and Optuna treat '/' as nesting, so scopes use ':'."""
        return {key.replace("/", ":"): key for key in self.distributions}

    def to_ray(self) -> dict[str, Any]:
        """The ``param_space`` for :class:`ray.tune.Tuner` (keys from :meth:`param_names`)."""
        return {name: self.distributions[key].to_ray() for name, key in self.param_names().items()}

    def sample(self, seed: int = 0) -> dict[str, Any]:
        """One point of the space (gin key -> value), as Python values."""
        return {key: dist.sample(seed + i) for i, (key, dist) in enumerate(self.distributions.items())}


def parse_space(space: dict[str, str]) -> SearchSpace:
    """Check every key of ``space`` against gin's registry and parse every distribution string."""
    if not space:
        raise HeartlabError(
            "search section: search.space is empty or missing: bind it to a dict such as "
            "{'ResNet1D.channels': 'choice([16, 32, 64])'}"
        )
    distributions: dict[str, Distribution] = {}
    canonical: dict[str, str] = {}
    for key, text in space.items():
        scope, selector, arg_name = check_binding_key(key)
        full = f"{scope}/{selector}.{arg_name}" if scope else f"{selector}.{arg_name}"
        if full in canonical:
            raise HeartlabError(f"search.space keys {canonical[full]!r} and {key!r} name the same parameter")
        canonical[full] = key
        distributions[key.strip()] = parse_distribution(text, key)
    return SearchSpace(distributions)


def check_metric(metric: str, valid: list[str]) -> None:
    """Raise :class:`HeartlabError` unless ``metric`` is one of the reported validation metrics."""
    if metric in valid:
        return
    choices = [m for m in valid if m.startswith("val/")] or valid
    near = difflib.get_close_matches(metric, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise HeartlabError(
        f"search.metric {metric!r} is not a metric training reports{hint} (choose from {', '.join(choices)})"
    )


# ---------------------------------------------------------------------------------------------------
# Values as gin text
# ---------------------------------------------------------------------------------------------------


def to_python(value: Any) -> Any:
    """Turn numpy scalars/arrays (as Ray samples them) into Python values gin can print and parse."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(to_python(v) for v in value)
    if isinstance(value, dict):
        return {to_python(k): to_python(v) for k, v in value.items()}
    return value


def gin_literal(value: Any) -> str:
    """``value`` as gin source text. Strings starting with ``@`` or ``%`` stay gin references/macros, so
    ``choice(['@ResNet1D', '@CNN2D'])`` can choose between configurables."""
    value = to_python(value)
    if isinstance(value, str) and value[:1] in ("@", "%"):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise HeartlabError(f"cannot bind the non-finite value {value!r}")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(gin_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{gin_literal(k)}: {gin_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def binding_lines(values: dict[str, Any]) -> list[str]:
    """``key = value`` gin lines for sampled values."""
    return [f"{key} = {gin_literal(value)}" for key, value in values.items()]
