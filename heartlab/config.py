"""Loading experiment configs: gin files plus command-line bindings, with errors a user can act on."""

from __future__ import annotations

import importlib
import tokenize
from collections.abc import Sequence
from pathlib import Path

import gin

from heartlab.errors import HeartlabError

# Modules whose configurables a config may bind; imported before any parse so that unknown names fail.
CONFIGURABLE_MODULES = ("heartlab.train",)


def register_configurables() -> None:
    for module in CONFIGURABLE_MODULES:
        importlib.import_module(module)


def set_include_search_path(path: Path) -> None:
    """Make ``include`` lines resolve against the config's parent directory, its own directory, then the
    current directory.

    gin tries its search prefixes in order, the first being ``''``; for a relative include such as
    ``configs/base.gin`` it then also asks its Python-package reader, which fails when a ``configs`` folder
    is on ``sys.path`` as a namespace package. Absolute directories placed first avoid that lookup.
    gin has no public call to reorder prefixes, hence the module attribute.
    """
    config_dir = path.resolve().parent
    prefixes = [str(config_dir.parent), str(config_dir), str(Path.cwd()), ""]
    gin.config._LOCATION_PREFIXES[:] = list(dict.fromkeys(prefixes))


def load_config(path: str | Path, bindings: Sequence[str] = ()) -> Path:
    """Clear gin, then parse the config file ``path`` and the extra ``bindings`` (``'ResNet1D.channels=64'``).

    ``include`` lines resolve against the current directory, the config's own directory and its parent
    (so ``include 'configs/base.gin'`` works from the project root and from ``configs/``).

    Raises:
        HeartlabError: the file is missing or does not parse, or a binding names an unknown configurable.
    """
    path = Path(path)
    if not path.is_file():
        raise HeartlabError(f"{path}: no such config file")
    register_configurables()
    gin.clear_config()
    set_include_search_path(path)
    try:
        gin.parse_config_files_and_bindings([str(path)], list(bindings), skip_unknown=False, finalize_config=False)
    except (ValueError, KeyError, SyntaxError, OSError, TypeError, tokenize.TokenError) as exc:
        message = " ".join(str(exc).split())
        raise HeartlabError(f"{path}: {message}") from None
    return path
