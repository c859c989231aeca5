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


_check_name_clash()

from fastcore._version import __version__  # noqa: E402
from fastcore._errors import ConvergenceError, ConvergenceWarning, InternalError  # noqa: E402
from fastcore.softmax import logsumexp, masked_softmax  # noqa: E402
from fastcore import attention, crf, init, norm, optim, ot  # noqa: E402,F401  (fastcore.dask, fastcore.torch: optional)

__all__ = [
    "__version__",
    "ConvergenceError",
    "ConvergenceWarning",
    "InternalError",
    "logsumexp",
    "masked_softmax",
    "attention",
    "crf",
    "init",
    "norm",
    "optim",
    "ot",
]
