"""Exception and warning classes shared by all fastcore kernels."""
import os
import sys
import warnings


class ConvergenceWarning(UserWarning, RuntimeWarning):
    """An iterative kernel stopped before reaching its tolerance (result is usable but inexact).

    A ``UserWarning`` as in POT and scikit-learn (so ``pytest.warns(UserWarning)`` and
    ``filterwarnings`` written for them catch it), and a ``RuntimeWarning`` as in earlier
    fastcore releases."""


class ConvergenceError(RuntimeError):
    """An iterative kernel stopped before reaching its tolerance and the caller asked to raise."""


class InternalError(RuntimeError):
    """A kernel detected a broken internal invariant. This is a bug: please report it."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message, category=ConvergenceWarning):
    """``warnings.warn`` attributed to the first caller outside fastcore.

    Kernels warn from several depths (a public function, a class method, a
    binding); a fixed ``stacklevel`` would point inside the package for some of
    them.  Walking the stack to the user's frame makes the warning's file and
    line, and ``-W error`` filters by module, refer to the user's code.
    """
    frame = sys._getframe(1)  # warn()'s stacklevel 2
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
