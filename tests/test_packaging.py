"""The boundary with the user's environment: the quick start's commands, the error a
user gets when the source folder shadows the installed package, and the test
requirements file that the README installs instead of rebuilding the package."""
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

import fastcore

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirement_names(lines):
    return sorted(re.sub(r"\s+", "", line) for line in lines)


def test_test_requirements_file_equals_the_test_extra():
    with open(os.path.join(HERE, "requirements.txt"), encoding="utf-8") as f:
        listed = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    declared = []
    for req in metadata.requires("fastcore-kernels") or []:
        spec, _, marker = req.partition(";")
        if re.search(r"""extra\s*==\s*["']test["']""", marker):
            declared.append(spec.strip())
    assert declared, "the installed metadata has no 'test' extra"
    assert _requirement_names(listed) == _requirement_names(declared)


def test_tour_console_script_is_declared():
    eps = metadata.entry_points(group="console_scripts")
    tour = [ep for ep in eps if ep.name == "fastcore-tour"]
    assert len(tour) == 1 and tour[0].value == "fastcore._tour:main"


def _source_copy(tmp_path):
    """A folder laid out like the clone's root: fastcore/ with Python files, no compiled modules."""
    installed = os.path.dirname(os.path.abspath(fastcore.__file__))
    dst = tmp_path / "fastcore"
    shutil.copytree(installed, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return tmp_path


@pytest.mark.parametrize("args", [["-c", "import fastcore"], ["-m", "fastcore"]])
def test_source_folder_shadowing_names_cause_and_fix(tmp_path, args):
    root = _source_copy(tmp_path)
    # the copy this test imported (installed, or an in-place build) stands later on the path
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(fastcore.__file__)))}
    r = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "circular import" not in r.stderr
    assert "source folder" in r.stderr and "no compiled modules" in r.stderr, r.stderr
    assert "fastcore-tour" in r.stderr and "build_ext --inplace" in r.stderr
    # the message points at the installed copy, which is what a user should run instead
    assert os.path.dirname(os.path.abspath(fastcore.__file__)) in r.stderr
