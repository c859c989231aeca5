"""Run fastcore beside its peers on the same inputs and print median times and ratios.

    python bench/compare.py                 # every family, 1 thread
    python bench/compare.py softmax crf     # some families
    python bench/compare.py --threads 2 --plot bench/results.png
    python bench/compare.py ot --threads 2 --peer-threads 1   # fastcore on 2 threads vs serial peers

A ratio is peer time / fastcore time (above 1: fastcore is faster).  Peers that
are not installed are left out.  Timings are interleaved round-robin in one
process; quote medians and ratios, not absolute times (the machine is shared).
"""
import argparse
import glob
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def load_families():
    fams = {}
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[len("bench_"):-3]
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        fams[name] = mod
    return fams


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help="families to run (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="threads for fastcore (and the peers)")
    ap.add_argument("--peer-threads", type=int, default=None,
                    help="threads for the peers (BLAS, OpenMP, torch); default: --threads. Peers that "
                         "are loops of serial solves (POT's emd) only lose from extra BLAS threads")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--plot", default=None, help="write a PNG bar chart of the ratios here")
    args = ap.parse_args(argv)

    peer_threads = args.threads if args.peer_threads is None else args.peer_threads
    os.environ["FASTCORE_BENCH_THREADS"] = str(args.threads)  # fastcore gets n_threads explicitly
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(peer_threads)
    import _harness

    if _harness.have("torch"):
        import torch

        torch.set_num_threads(peer_threads)
    import fastcore

    fastcore.show_config()  # the CPU and the code path belong beside every table
    fams = load_families()
    chosen = args.families or list(fams)
    rows = []
    for fam in chosen:
        if fam not in fams:
            ap.error(f"unknown family {fam!r}; have {', '.join(fams)}")
        for case in fams[fam].cases():
            med = _harness.time_case(case, repeats=args.repeats)
            ref = med.get("fastcore")
            for impl, t in med.items():
                per = ""
                if case.work:
                    unit, count = case.work
                    per = f"{t / count * 1e9:10.1f} ns/{unit}"
                ratio = (t / ref) if ref else float("nan")
                rows.append((case.family, case.name, impl, t, ratio, per))
                print(f"{case.family:10s} {case.name:38s} {impl:14s} {t * 1e3:10.3f} ms  x{ratio:7.2f} {per}", flush=True)
    print(f"\n(threads={args.threads}, peer threads={peer_threads}; ratio = time / fastcore time, above 1 means fastcore is faster)")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no plot")
            return 0
        peers = [r for r in rows if r[2] != "fastcore"]
        labels = [f"{r[1]}\nvs {r[2]}" for r in peers]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(peers)), 4))
        ax.bar(range(len(peers)), [r[4] for r in peers])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(peers)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("peer time / fastcore time")
        ax.set_yscale("log")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
