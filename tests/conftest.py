import os
import sys

# tests/_helpers.py is imported as a plain module (pytest runs with --import-mode=importlib)
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    import fastcore

    where = os.path.dirname(os.path.abspath(fastcore.__file__))
    if os.environ.get("FASTCORE_TEST_INSTALLED"):
        source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastcore")
        if os.path.samefile(where, source):
            raise RuntimeError(f"fastcore was imported from the source tree {where}, not the installed package")
    return f"fastcore {fastcore.__version__} imported from {where}"


@pytest.fixture
def rng():
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(20261129)
