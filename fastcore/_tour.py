"""``fastcore-tour`` (or ``python -m fastcore`` outside the repository's root): a few
seconds through every kernel family on small built-in examples, printing what was computed
and how long it took beside a plain NumPy version.

Each family contributes one ``tour_<family>(show)`` function in its public
module; FAMILIES lists the modules in the order they are shown.
"""
import importlib
import time

import numpy as np

FAMILIES = ["softmax", "optim", "crf", "ot", "sinkhorn", "attention"]


def timed(fn, *args, repeat=5, **kwargs):
    """(result, best seconds) of ``fn(*args, **kwargs)`` over a few runs."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return result, best


class Show:
    """Printing helpers handed to each family's tour function."""

    def title(self, text):
        print(f"\n== {text} " + "=" * max(0, 70 - len(text)))

    def line(self, text=""):
        print(f"   {text}")

    def compare(self, label, fast_s, ref_s, ref_name="NumPy"):
        ratio = ref_s / fast_s if fast_s > 0 else float("inf")
        print(f"   {label:44s} fastcore {fast_s * 1e3:8.3f} ms   {ref_name} {ref_s * 1e3:8.3f} ms   ({ratio:5.1f}x)")


def main(argv=None):
    import fastcore

    np.set_printoptions(precision=4, suppress=True)
    fastcore.show_config()
    show = Show()
    t0 = time.perf_counter()
    for fam in FAMILIES:
        mod = importlib.import_module(f"fastcore.{fam}")
        getattr(mod, f"tour_{fam}")(show)
    print(f"\nTour done in {time.perf_counter() - t0:.2f} s.")
    return 0
