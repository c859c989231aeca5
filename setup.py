"""Extensions and compiler flags only; metadata lives in pyproject.toml.

Environment variables (all optional):
  FASTCORE_NATIVE=1     -march=native for a local build (never for wheels: other
                        CPUs would crash with SIGILL).  Without it, hot kernels are
                        compiled for several instruction sets and dispatched at load
                        time (csrc/core/fc_simd.h, FC_MULTIVERSION).
  FASTCORE_PORTABLE=1   the plain-C backend (csrc/core/fc_simd.h: no vector extensions,
                        no multiversioning), what compilers without GCC/Clang vector
                        extensions (MSVC) get; CI runs the test suite on it.
  FASTCORE_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer build (see README).
  FASTCORE_BUILD_JOBS=N compiler processes at once (default: the cores this
                        process may use).  Every C file of every extension is
                        compiled in parallel; the big kernel families are split
                        into one translation unit per precision for that reason.
"""
import os
import re
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# module -> C sources of its kernel family (COMMON_SOURCES are added to all); the
# longest compilations first, so that they start first in the parallel build
EXTENSIONS = {
    "fastcore._crf": ["csrc/crf/crf_forward_f32.c", "csrc/crf/crf_forward_f64.c", "csrc/crf/crf_memm_f32.c",
                      "csrc/crf/crf_memm_f64.c", "csrc/crf/crf_viterbi_f32.c", "csrc/crf/crf_viterbi_f64.c",
                      "csrc/crf/crf_dispatch.c", "csrc/crf/crf_reference.c"],
    "fastcore._attention": ["csrc/attention/attention_forward_f32.c", "csrc/attention/attention_forward_f64.c",
                            "csrc/attention/attention_backward_f32.c", "csrc/attention/attention_backward_f64.c",
                            "csrc/attention/attention_dispatch.c", "csrc/attention/attention_reference.c"],
    "fastcore._emd": ["csrc/ot/emd.c", "csrc/ot/documents.c"],
    "fastcore._sinkhorn": ["csrc/ot/sinkhorn_f32.c", "csrc/ot/sinkhorn_f64.c", "csrc/ot/sinkhorn_dispatch.c",
                          "csrc/ot/sinkhorn_reference.c"],
    "fastcore._optim": ["csrc/optim/optim_f32.c", "csrc/optim/optim_f64.c", "csrc/optim/norm_f32.c",
                        "csrc/optim/norm_f64.c", "csrc/optim/optim_dispatch.c", "csrc/optim/optim_reference.c"],
    "fastcore._softmax": ["csrc/attention/softmax_f32.c", "csrc/attention/softmax_f64.c", "csrc/attention/softmax_dispatch.c",
                          "csrc/attention/softmax_reference.c"],
    "fastcore._common": [],
}
COMMON_SOURCES = ["csrc/core/fc_status.c", "csrc/core/fc_pool.c"]


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _build_jobs():
    try:
        n = int(os.environ.get("FASTCORE_BUILD_JOBS", "0"))
    except ValueError:
        n = 0
    if n < 1:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
    return max(1, n)


def _compile_in_parallel(compiler, jobs):
    """Make ``compiler.compile`` compile its sources at the same time, at most ``jobs``
    compiler processes across all extensions (which build_ext also builds in parallel).

    The loop is distutils' own CCompiler.compile with a thread pool around ``_compile``;
    compilers that do not implement ``_compile`` (MSVC) keep their serial compile."""
    if not hasattr(compiler, "_compile") or not hasattr(compiler, "_setup_compile"):
        return
    slots = threading.BoundedSemaphore(jobs)

    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            with slots:
                compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        todo = [obj for obj in objects if obj in build]
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
            for f in [pool.submit(one, obj) for obj in todo]:
                f.result()
        return objects

    compiler.compile = compile


class BuildExt(build_ext):
    """Picks flags for the compiler at hand."""

    def _accepts(self, flags):
        """Whether the compiler compiles a small file with these flags (and no warning flag
        it does not know: -Werror)."""
        tmp = tempfile.mkdtemp()
        try:
            path = os.path.join(tmp, "probe.c")
            with open(path, "w") as f:
                f.write("int main(void) { int s = 0;\n#pragma omp simd reduction(+ : s)\n"
                        "for (int i = 0; i < 8; ++i) s += i;\nreturn s != 28; }\n")
            self.compiler.compile([path], output_dir=tmp, extra_postargs=flags + ["-Werror"])
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            cflags, ldflags = ["/O2", "/std:c11", "/fp:precise", "/openmp:experimental"], []
        else:
            # -g0: no debug info in release builds (Python's own CFLAGS carry -g): 3x smaller
            # extensions and a quicker build; the sanitizer build below turns it back on.
            # Threads come from csrc/core/fc_pool.c (pthreads), not OpenMP; -fopenmp-simd only makes
            # the compiler honour '#pragma omp simd' (no runtime library).
            # -falign-functions=64: every function starts on a cache line, so a hot loop's place
            # relative to 64-byte boundaries no longer depends on what else its translation unit
            # holds.  Without it, the byte-identical CRF forward kernel ran at 110 or 140 ns/token
            # (K = 50, AVX-512) depending only on where the linker put it.
            cflags = ["-O3", "-g0", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
                      "-fvisibility=hidden", "-falign-functions=64", "-pthread", "-Wall", "-Wno-unused-function",
                      "-Wno-unknown-pragmas"]
            ldflags = ["-pthread"]
            if self._accepts(["-fopenmp-simd"]):
                cflags.append("-fopenmp-simd")
            if _env_flag("FASTCORE_NATIVE"):
                cflags += ["-march=native", "-DFC_NO_MULTIVERSION"]
            if _env_flag("FASTCORE_PORTABLE"):
                cflags.append("-DFASTCORE_PORTABLE")
            if _env_flag("FASTCORE_SANITIZE"):
                san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                       "-fno-omit-frame-pointer", "-g", "-DFC_NO_MULTIVERSION"]
                cflags = [f for f in cflags if f not in ("-O3", "-g0")] + ["-O1"] + san
                ldflags += ["-fsanitize=address,undefined"]
        print(f"fastcore: cflags {' '.join(cflags)}", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = list(cflags)
            ext.extra_link_args = list(ldflags)
        jobs = _build_jobs() if not self.parallel else (os.cpu_count() if self.parallel is True else self.parallel)
        if jobs > 1:
            _compile_in_parallel(self.compiler, jobs)
            self.parallel = jobs  # build_ext then builds the extensions in parallel too
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
