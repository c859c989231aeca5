"""Extensions and compiler flags only; metadata lives in pyproject.toml.

Environment variables (all optional):
  FASTCORE_NATIVE=1     -march=native for a local build (never for wheels: other
                        CPUs would crash with SIGILL).  Without it, hot kernels are
                        compiled for several instruction sets and dispatched at load
                        time (csrc/fc_parallel.h, FC_MULTIVERSION).
  FASTCORE_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer build (see README).
  FASTCORE_NO_OPENMP=1  build without OpenMP even if the compiler has it.
"""
import os
import re
import shutil
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# module -> C sources of its kernel family (csrc/fc_status.c is added to all)
EXTENSIONS = {
    "fastcore._common": [],
    "fastcore._softmax": ["csrc/softmax.c"],
    "fastcore._optim": ["csrc/optim.c", "csrc/norm.c"],
    "fastcore._crf": ["csrc/crf.c"],
    "fastcore._emd": ["csrc/emd.c"],
    "fastcore._sinkhorn": ["csrc/sinkhorn.c"],
    "fastcore._attention": ["csrc/attention.c"],
}
COMMON_SOURCES = ["csrc/fc_status.c"]


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class BuildExt(build_ext):
    """Picks flags for the compiler at hand and probes for OpenMP."""

    def _try_compile(self, flags, link_flags):
        src = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n<1;}\n"
        tmp = tempfile.mkdtemp()
        try:
            path = os.path.join(tmp, "omp_probe.c")
            with open(path, "w") as f:
                f.write(src)
            objs = self.compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            self.compiler.link_executable(objs, "omp_probe", output_dir=tmp, extra_postargs=link_flags)
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            cflags, ldflags = ["/O2", "/std:c11", "/fp:precise"], []
            omp = (["/openmp"], [])
        else:
            cflags = ["-O3", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
                      "-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas"]
            ldflags = []
            omp = (["-fopenmp"], ["-fopenmp"])
            if _env_flag("FASTCORE_NATIVE"):
                cflags += ["-march=native", "-DFC_NO_MULTIVERSION"]
            if _env_flag("FASTCORE_SANITIZE"):
                san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                       "-fno-omit-frame-pointer", "-g", "-DFC_NO_MULTIVERSION"]
                cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
                ldflags += ["-fsanitize=address,undefined"]
        use_omp = not _env_flag("FASTCORE_NO_OPENMP") and self._try_compile(*omp)
        if use_omp:
            cflags, ldflags = cflags + omp[0], ldflags + omp[1]
        print(f"fastcore: OpenMP {'on' if use_omp else 'off'}; cflags {' '.join(cflags)}", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = list(cflags)
            ext.extra_link_args = list(ldflags)
        super().build_extensions()


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"|cdef\s+extern\s+from\s+"([^"]+)"', re.M)


def _local_headers(files):
    """The csrc/ headers that ``files`` include, directly or through other headers."""
    seen, todo = set(), list(files)
    while todo:
        with open(todo.pop(), encoding="utf-8") as f:
            names = [a or b for a, b in _INCLUDE.findall(f.read())]
        for path in (os.path.join("csrc", name) for name in names):
            if os.path.exists(path) and path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def _extensions():
    exts = []
    for name, srcs in EXTENSIONS.items():
        sources = [name.replace(".", "/") + ".pyx"] + srcs + COMMON_SOURCES
        # editing a header rebuilds the extensions that include it, and only those
        depends = _local_headers(sources + ["fastcore/_common.pxd"])
        exts.append(Extension(name, sources=sources, include_dirs=["csrc"], depends=depends))
    return cythonize(
        exts,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["fastcore"],
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
