/* Threads and instruction sets, in one place.
 *
 * FC_OMP_PARALLEL(n)  opens `#pragma omp parallel num_threads(n)` when the build
 *                     has OpenMP, and nothing otherwise (the block runs once).
 * fc_team(n, fn, arg)  fn(arg) on each thread of a team of n, or on the calling thread
 *                     alone, with no team, when n == 1 (a libgomp team of one costs about
 *                     0.7 us a call here: its allocation, and a futex system call at its end
 *                     and at every barrier).
 * FC_OMP_BARRIER      a barrier of the team, a statement (nothing without OpenMP, and next
 *                     to nothing outside a team, as in fc_team with n == 1).
 * fc_thread_id(), fc_thread_count()  0 / 1 without OpenMP.
 * fc_split(n, parts, k, &lo, &hi)    static partition of [0, n) into `parts` chunks.
 * fc_claim(&next)                    dynamic scheduling: the next index of a shared counter.
 * FC_OMP_FAIL(status, code)          a thread records a failure in the shared status.
 * FC_MULTIVERSION     put before a hot function (its helpers must be FC_INLINE, fc_math.h): GCC on x86-64 Linux compiles it
 *                     three times (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA, and
 *                     the baseline) and picks one at load time, so wheels stay
 *                     portable (no -march=native) yet use the machine's vector
 *                     width.  Empty elsewhere, with FASTCORE_NATIVE builds and
 *                     under sanitizers.
 */
#ifndef FC_PARALLEL_H
#define FC_PARALLEL_H

#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#define FC_PRAGMA(x) _Pragma(#x)
#define FC_OMP_PARALLEL(n) FC_PRAGMA(omp parallel num_threads(n))
static inline int fc_thread_id(void) { return omp_get_thread_num(); }
static inline int fc_thread_count(void) { return omp_get_num_threads(); }
/* A thread of a parallel region records a failure code in a status shared by the team
 * (every writer writes a failure; the caller returns it after the region). */
#define FC_OMP_FAIL(status, code) do { FC_PRAGMA(omp atomic write) (status) = (code); } while (0)
#define FC_OMP_BARRIER do { FC_PRAGMA(omp barrier) } while (0)
#else
#define FC_OMP_PARALLEL(n)
static inline int fc_thread_id(void) { return 0; }
static inline int fc_thread_count(void) { return 1; }
#define FC_OMP_FAIL(status, code) do { (status) = (code); } while (0)
#define FC_OMP_BARRIER do { } while (0)
#endif

/* The body fn of a parallel region, given its shared state arg; every thread runs it.  Without
 * a team (n == 1) fc_thread_id() is 0, fc_thread_count() 1, and FC_OMP_BARRIER returns at once.
 * Called from inside an active parallel region, n == 1 still opens a (nested, one-thread)
 * region, so that fn's barriers never wait for the outer team. */
static inline void fc_team(int n, void (*fn)(void *), void *arg)
{
#ifdef _OPENMP
    if (n > 1 || omp_in_parallel()) {
        FC_PRAGMA(omp parallel num_threads(n))
        fn(arg);
        return;
    }
#else
    (void)n;
#endif
    fn(arg);
}

/* Chunk k of `parts` equal chunks of [0, n). */
static inline void fc_split(ptrdiff_t n, int parts, int k, ptrdiff_t *lo, ptrdiff_t *hi)
{
    ptrdiff_t q = n / parts, r = n % parts;
    *lo = k * q + (k < r ? k : r);
    *hi = *lo + q + (k < r ? 1 : 0);
}

/* Dynamic scheduling: claims the next index of a counter shared by the team (0 before the
 * region); every index is handed out once, so work items of uneven size balance across
 * threads, and results computed per item do not depend on which thread took it. */
static inline ptrdiff_t fc_claim(ptrdiff_t *next)
{
    ptrdiff_t i;
#ifdef _OPENMP
    FC_PRAGMA(omp atomic capture)
#endif
    i = (*next)++;
    return i;
}

/* Never more threads than work items, never fewer than one. */
static inline int fc_clamp_threads(int n_threads, ptrdiff_t work)
{
    if (work < 1) return 1;
    return (ptrdiff_t)n_threads > work ? (int)work : (n_threads < 1 ? 1 : n_threads);
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
    && defined(__linux__) && !defined(FC_NO_MULTIVERSION) && !defined(__SANITIZE_ADDRESS__)
#define FC_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_MULTIVERSION
#endif

#endif /* FC_PARALLEL_H */
