"""The one gin loader: configurables registered once, includes resolved once, gin errors worded once.

Every config heartlab reads (``heartlab train``, a study, a Ray trial, ``best.gin``) goes through
:func:`flatten_config` and :func:`parse_text`: ``include`` lines are replaced by the included file's text
(so a study or a trial parses exactly the text that was checked), and a gin error is reported as one
line naming the file and line it came from.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import re
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gin
from gin import config_parser

from heartlab.errors import HeartlabError

# Every module that defines something a config may bind. Imported before any parse, so that a name that
# is not among them fails as unknown instead of depending on what happened to be imported.
CONFIGURABLE_MODULES = (
    "heartlab.ablation",
    "heartlab.augment",
    "heartlab.data",
    "heartlab.losses",
    "heartlab.metrics",
    "heartlab.models",
    "heartlab.operating_point",
    "heartlab.optimizers",
    "heartlab.search",
    "heartlab.train",
)
# What gin raises for a config it cannot parse or apply.
GIN_ERRORS = (ValueError, KeyError, SyntaxError, OSError, TypeError, ImportError, tokenize.TokenError)

_INCLUDE = re.compile(r"""^\s*include\s+(['"])(?P<path>.+?)\1\s*(#.*)?$""")
_GIN_LINE = re.compile(r"In bindings string line (\d+)")


def register_configurables() -> None:
    """Import every module in :data:`CONFIGURABLE_MODULES` (cheap after the first call)."""
    for module in CONFIGURABLE_MODULES:
        importlib.import_module(module)


@dataclass(frozen=True)
class ConfigText:
    """A config as one text (includes inlined), and where each of its lines came from."""

    text: str
    origins: tuple[str, ...]  # "<file>:<line>" or "--bind '<binding>'" for line i + 1 of ``text``

    @classmethod
    def of(cls, text: str, label: str) -> ConfigText:
        """A text read as a whole (a stored ``study.gin``, the config inside ``best.pt``), lines ``label:N``."""
        return cls(text, tuple(f"{label}:{i}" for i in range(1, text.count("\n") + 2)))

    def where(self, lineno: int) -> str:
        return self.origins[lineno - 1] if 1 <= lineno <= len(self.origins) else "config"

    def then(self, other: ConfigText) -> ConfigText:
        """This text followed by ``other`` (whose bindings then take precedence), origins kept."""
        text = self.text if not self.text or self.text.endswith("\n") else self.text + "\n"
        origins = self.origins[: text.count("\n")] if len(self.origins) > text.count("\n") else self.origins
        return ConfigText(text + other.text, origins + other.origins)

    def plus(self, lines: Sequence[str], origin: str) -> ConfigText:
        """This text with ``lines`` appended (e.g. ``--bind`` values), each labelled ``origin 'line'``."""
        added = list(lines)
        return ConfigText(
            self.text + "".join(line + "\n" for line in added),
            self.origins + tuple(f"{origin} {line.strip()!r}" for line in added),
        )


def resolve_include(name: str, chain: Sequence[Path]) -> Path:
    """The file an ``include 'name'`` line means, ``chain`` being the including files (innermost last).

    An absolute name is taken as it is. A relative one is looked up beside each file of the chain and in
    that file's parent directory (the project root, for a file in ``configs/``), innermost file first,
    then in the current directory: so ``include 'configs/base.gin'`` works from anywhere.
    """
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate.resolve()
    else:
        folders = [folder for file in reversed(chain) for folder in (file.parent, file.parent.parent)]
        for folder in [*folders, Path.cwd()]:
            if (folder / candidate).is_file():
                return (folder / candidate).resolve()
    raise HeartlabError(f"{chain[-1]}: included file {name!r} not found (looked beside the including files and in {Path.cwd()})")


def flatten_config(path: str | Path) -> ConfigText:
    """The config file ``path`` with every ``include`` line replaced by the included text, recursively."""
    top = Path(path)
    if not top.is_file():
        raise HeartlabError(f"{path}: no such config file")
    lines: list[str] = []
    origins: list[str] = []

    def expand(file: Path, chain: tuple[Path, ...]) -> None:
        if file in chain:
            raise HeartlabError(f"{file}: include cycle ({' -> '.join(str(p) for p in (*chain, file))})")
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise HeartlabError(f"{file}: cannot read ({exc})") from None
        shown = top if file == top.resolve() else _short(file)
        for number, line in enumerate(text.splitlines(), start=1):
            match = _INCLUDE.match(line)
            if match is None:
                lines.append(line)
                origins.append(f"{shown}:{number}")
                continue
            included = resolve_include(match["path"], (*chain, file))
            lines.append(f"# ---- include '{match['path']}' ({_short(included)}) ----")
            origins.append(f"{shown}:{number}")
            expand(included, (*chain, file))
            lines.append(f"# ---- end of include '{match['path']}' ----")
            origins.append(f"{shown}:{number}")

    expand(top.resolve(), ())
    return ConfigText("".join(line + "\n" for line in lines), tuple(origins))


def _short(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it (for readable messages)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


@contextlib.contextmanager
def gin_errors(config: ConfigText | None = None, where: str = "config") -> Iterator[None]:
    """Turn an exception gin raises into one :class:`HeartlabError` line.

    With ``config``, gin's "line N" is mapped back to the file and line (or ``--bind``) it came from.
    """
    try:
        yield
    except GIN_ERRORS as exc:
        message = str(exc)
        if isinstance(exc, SyntaxError) and exc.msg:  # gin's parser: msg, and the line in exc.lineno
            message = exc.msg
        if config is not None:
            match = _GIN_LINE.search(message)
            lineno = int(match.group(1)) if match else _error_line(exc)
            if lineno is not None:
                where = config.where(lineno)
        first = message.split("\n  In bindings string")[0]
        raise HeartlabError(f"{where}: {' '.join(first.split()) or type(exc).__name__}") from None


def _error_line(exc: Exception) -> int | None:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return int(exc.lineno)
    if isinstance(exc, tokenize.TokenError) and len(exc.args) > 1 and isinstance(exc.args[1], tuple):
        return max(1, int(exc.args[1][0]) - 1)  # the tokenizer reports the line after the open bracket
    return None


def parse_text(config: ConfigText) -> None:
    """Clear gin and parse ``config``; a :class:`HeartlabError` naming the file and line on any problem."""
    register_configurables()
    gin.clear_config()
    with gin_errors(config):
        gin.parse_config(config.text)


def load_config(path: str | Path, bindings: Sequence[str] = ()) -> ConfigText:
    """Clear gin, then parse the config file ``path`` and the extra ``bindings`` (``'ResNet1D.channels=64'``).

    Returns the parsed text (includes inlined, bindings appended).

    Raises:
        HeartlabError: the file is missing or does not parse, an include is missing, or a binding names an
            unknown configurable or parameter.
    """
    config = flatten_config(path).plus(list(bindings), "--bind")
    parse_text(config)
    return config


def bound(configurable: Callable, name: str) -> Any:
    """``configurable``'s parameter ``name`` as the current gin config binds it, else its default.

    This is how code reads a setting without copying its default: ``bound(fit, 'epochs')``.
    """
    bindings = gin.get_bindings(configurable)
    if name in bindings:
        return bindings[name]
    default = inspect.signature(configurable).parameters[name].default
    if default is gin.REQUIRED:
        raise HeartlabError(f"{configurable.__name__}.{name} is not bound")
    return default


# ---- what can be bound ----------------------------------------------------------------------------


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
