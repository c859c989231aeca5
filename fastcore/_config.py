"""``fastcore.show_config()``: what this build of fastcore runs on, for bug reports and beside
every benchmark table."""
import platform

from fastcore import _threads
from fastcore._common import compiler, simd_path, threads_backend
from fastcore._version import __version__


def config():
    """This build's configuration as a dict (what :func:`show_config` prints)."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "simd_path": simd_path(),
        "compiler": compiler(),
        "threads_backend": threads_backend(),
        "available_cores": _threads.available_cores(),
        "OMP_NUM_THREADS": _threads._ENV_LIMIT,
        "thread_limit": _threads._user_limit,
        "default_threads": _threads.get_num_threads(),
    }


def show_config():
    """Print the version, CPU, SIMD code path and thread policy of this build.

    Examples
    --------
    >>> import fastcore
    >>> fastcore.show_config()  # doctest: +ELLIPSIS
    fastcore ...
    """
    c = config()
    print(f"fastcore {c['version']} (fastcore-kernels), Python {c['python']}, {c['machine']}")
    print(f"  cpu:      {c['cpu']}")
    print(f"  kernels:  {c['simd_path']}, built by {c['compiler']}")
    print(f"  threads:  {c['default_threads']} by default ({c['threads_backend']} pool; "
          f"{c['available_cores']} core(s) available, OMP_NUM_THREADS={c['OMP_NUM_THREADS']}, "
          f"set_num_threads/threadpoolctl limit={c['thread_limit']})")


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
