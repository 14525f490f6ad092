"""Loading experiment configs: gin files plus command-line bindings, with errors a user can act on."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import gin

from heartlab.errors import HeartlabError

# Modules whose configurables a config may bind; imported before any parse so that unknown names fail.
CONFIGURABLE_MODULES = ("heartlab.train",)


def register_configurables() -> None:
    for module in CONFIGURABLE_MODULES:
        importlib.import_module(module)


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
    for directory in (path.resolve().parent, path.resolve().parent.parent):
        gin.add_config_file_search_path(str(directory))
    try:
        gin.parse_config_files_and_bindings([str(path)], list(bindings), skip_unknown=False, finalize_config=False)
    except (ValueError, KeyError, SyntaxError, IOError, TypeError) as exc:
        message = " ".join(str(exc).split())
        raise HeartlabError(f"{path}: {message}") from None
    return path
