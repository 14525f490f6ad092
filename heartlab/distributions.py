"""Distribution strings of a search space (``'loguniform(1e-4, 3e-3)'``) and values as gin text.

The strings are parsed with :mod:`ast` against a whitelist (:data:`DISTRIBUTIONS`) and their arguments
must be literals: nothing is ever ``eval``-ed. Ray is imported only to build or sample a domain.
"""

from __future__ import annotations

import ast
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from heartlab import checks
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

    def first(self) -> Any:
        """A value Ray can draw, found without importing Ray (the dry run's point): the first option of a
        choice or grid, the lower bound of a range (rounded up to a multiple of ``q`` where there is one)."""
        if self.name in ("choice", "grid_search"):
            return to_python(self.args[0][0])
        lower = self.args[0]
        if len(self.args) > 2:
            q = self.args[2]
            lower = math.ceil(lower / q) * q
            lower = int(lower) if isinstance(q, int) and isinstance(self.args[0], int) else float(lower)
        return lower

    def sample(self, seed: int = 0) -> Any:
        """One value drawn by Ray's own sampler; grids give their first value."""
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
    number = checks.is_number
    if name in ("choice", "grid_search"):
        (options,) = values
        if not isinstance(options, (list, tuple)) or not options:
            raise fail(f"{name}() takes a non-empty list, e.g. {name}([16, 32, 64])")
        return
    lower, upper = values[0], values[1]
    if not (number(lower) and number(upper)):
        raise fail("lower and upper bounds must be finite numbers")
    if name in ("randint", "qrandint"):
        if not (checks.is_whole(lower) and checks.is_whole(upper)):
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
        if name == "qrandint" and not checks.is_whole(q):
            raise fail("qrandint() quantum q must be a whole number")




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
