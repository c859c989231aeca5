"""fastcore: CPU kernels for sequence models (CRF/MEMM, optimal transport,
attention, training steps) in C with thin, strict Python wrappers.

Distribution name ``fastcore-kernels``; import name ``fastcore``.  It cannot be
installed beside fast.ai's ``fastcore`` package, which uses the same import name.
"""
import os as _os


def _check_name_clash():
    # fast.ai's fastcore ships these modules; if they sit beside this file, both
    # distributions were installed into the same folder and overwrite each other.
    here = _os.path.dirname(__file__)
    clash = [f for f in ("basics.py", "xtras.py", "foundation.py") if _os.path.exists(_os.path.join(here, f))]
    if clash:
        raise ImportError(
            "fastcore-kernels and fast.ai's 'fastcore' package are both installed in "
            f"{here} (found {', '.join(clash)}); they share the import name 'fastcore' and "
            "cannot be installed together. Use separate virtual environments, or "
            "'pip uninstall fastcore fastcore-kernels' and reinstall the one you need."
        )


def _check_compiled():
    # The compiled modules live only in the installed package (or beside this file
    # after an in-place build).  When the current folder is a clone of the repository,
    # Python finds the source folder first (python -m ..., python -c, the REPL) and
    # the first compiled import would fail as a confusing "circular import".
    import sys
    from importlib.machinery import EXTENSION_SUFFIXES, PathFinder

    here = _os.path.dirname(_os.path.abspath(__file__))
    if any(_os.path.exists(_os.path.join(here, "_common" + suffix)) for suffix in EXTENSION_SUFFIXES):
        return
    try:
        parent = _os.path.dirname(here)
        others = [p for p in sys.path if _os.path.abspath(p or ".") != parent]
        spec = PathFinder.find_spec("fastcore", others)
        installed = _os.path.dirname(spec.origin) if spec and spec.origin else None
    except Exception:  # pragma: no cover - only makes the message less specific
        installed = None
    where = f"the installed package is in {installed}" if installed else "no installed copy was found ('pip install .')"
    raise ImportError(
        f"fastcore is being imported from its source folder {here}, which has no compiled modules "
        f"({where}): Python puts the current folder first on sys.path. Run from outside the "
        "repository's root folder, use the 'fastcore-tour' and 'pytest tests' commands (they do not "
        "put the current folder on sys.path), or build in place with "
        "'python setup.py build_ext --inplace'."
    )


_check_name_clash()
_check_compiled()

from fastcore._version import __version__  # noqa: E402
from fastcore._errors import ConvergenceError, ConvergenceWarning, InternalError  # noqa: E402
from fastcore._threads import get_num_threads, num_threads, set_num_threads  # noqa: E402
from fastcore._config import show_config  # noqa: E402
from fastcore.softmax import logsumexp, masked_softmax  # noqa: E402
from fastcore import attention, crf, init, norm, optim, ot  # noqa: E402,F401  (fastcore.dask, fastcore.torch: optional)

__all__ = [
    "__version__",
    "ConvergenceError",
    "ConvergenceWarning",
    "InternalError",
    "get_num_threads",
    "set_num_threads",
    "num_threads",
    "show_config",
    "logsumexp",
    "masked_softmax",
    "attention",
    "crf",
    "init",
    "norm",
    "optim",
    "ot",
]
