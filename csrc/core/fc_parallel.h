/* Threads, in one place (the instruction sets: fc_simd.h).
 *
 * fc_team(n, fn, arg)  runs fn(arg) once for each rank 0 .. n-1 of a team of n; inside fn,
 *                     fc_thread_id() is the rank and fc_thread_count() is n.  The ranks are
 *                     work items that the threads of a small pool (fc_pool.c) and the
 *                     calling thread *claim*: the caller runs ranks too, a worker that wakes
 *                     late finds none left and goes back to sleep, and the call returns when
 *                     every rank is done, never waiting for a thread that has not started.
 *                     So ranks may run one after another on one thread: a body never waits
 *                     for another rank (no barriers; split the work into two fc_team calls
 *                     instead).  n == 1, a call from inside a rank, or a pool busy with
 *                     another caller's team run every rank on the calling thread.  Results
 *                     must not depend on which thread runs a rank.
 * fc_thread_id(), fc_thread_count()  the rank and team size (0 / 1 outside fc_team).
 * fc_split(n, parts, k, &lo, &hi)    static partition of [0, n) into `parts` chunks.
 * fc_claim(&next)                    dynamic scheduling: the next index of a shared counter.
 * FC_OMP_FAIL(status, code)          a rank records a failure in the shared status.
 * fc_atomic_load_int(&x)             reads a value that other ranks may write.
 *
 * The pool uses the platform's threads (pthreads, or Win32 threads on Windows), not OpenMP:
 * an OpenMP fork-join region ends in a barrier that waits for every thread of the team,
 * including one the OS has not scheduled yet (measured: single calls up to 36x slower beside
 * one busy process on 2 cores), GNU OpenMP's team does not survive fork() (a child hangs in
 * its first parallel region), Apple's compiler has no OpenMP, and torch brings its own runtime.
 */
#ifndef FC_PARALLEL_H
#define FC_PARALLEL_H

#include <stddef.h>

#include "core/fc_simd.h" /* FC_MULTIVERSION, FC_INLINE */

/* ---- atomics: GCC/Clang builtins, or MSVC's interlocked intrinsics (64-bit targets) ---- */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline ptrdiff_t fc_atomic_fetch_add(ptrdiff_t *p, ptrdiff_t v)
{
    return (ptrdiff_t)_InterlockedExchangeAdd64((volatile long long *)p, (long long)v);
}
static inline int fc_atomic_fetch_add_int(int *p, int v) { return (int)_InterlockedExchangeAdd((volatile long *)p, v); }
static inline int fc_atomic_load_int(const int *p) { return (int)_InterlockedOr((volatile long *)p, 0); }
static inline void fc_atomic_store_int(int *p, int v) { _InterlockedExchange((volatile long *)p, v); }
static inline int fc_atomic_cas_int(int *p, int expect, int desired)
{
    return _InterlockedCompareExchange((volatile long *)p, desired, expect) == expect;
}
static inline unsigned long long fc_atomic_load_u64(const unsigned long long *p)
{
    return (unsigned long long)_InterlockedOr64((volatile long long *)p, 0);
}
static inline void fc_atomic_store_u64(unsigned long long *p, unsigned long long v)
{
    _InterlockedExchange64((volatile long long *)p, (long long)v);
}
static inline int fc_atomic_cas_u64(unsigned long long *p, unsigned long long expect, unsigned long long desired)
{
    return (unsigned long long)_InterlockedCompareExchange64((volatile long long *)p, (long long)desired,
                                                            (long long)expect) == expect;
}
static inline void *fc_atomic_load_ptr(void *const *p)
{
    return _InterlockedCompareExchangePointer((void *volatile *)p, NULL, NULL);
}
static inline void fc_atomic_store_ptr(void **p, void *v) { _InterlockedExchangePointer((void *volatile *)p, v); }
#else
static inline ptrdiff_t fc_atomic_fetch_add(ptrdiff_t *p, ptrdiff_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int fc_atomic_fetch_add_int(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int fc_atomic_load_int(const int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void fc_atomic_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int fc_atomic_cas_int(int *p, int expect, int desired)
{
    return __atomic_compare_exchange_n(p, &expect, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline unsigned long long fc_atomic_load_u64(const unsigned long long *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void fc_atomic_store_u64(unsigned long long *p, unsigned long long v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int fc_atomic_cas_u64(unsigned long long *p, unsigned long long expect, unsigned long long desired)
{
    return __atomic_compare_exchange_n(p, &expect, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline void *fc_atomic_load_ptr(void *const *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void fc_atomic_store_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
#endif

/* A rank of a team records a failure code in a status shared by the team (every writer writes
 * a failure; the caller returns it after fc_team). */
#define FC_OMP_FAIL(status, code) fc_atomic_store_int(&(status), (code))

/* ---- the team (fc_pool.c) ---- */
void fc_team(int n, void (*fn)(void *), void *arg);
int fc_thread_id(void);
int fc_thread_count(void);

/* ---- Ctrl-C (fc_pool.c) ----
 * fc_interrupt_begin()  at the start of an entry point whose loops check for signals (and whose
 *                       binding maps FC_INTERRUPTED): clears this call's flag, starts the
 *                       thread's check interval, and lets the next fc_team wait interruptibly.
 * fc_interrupted()      1 once a signal handler raised in the thread that called the kernel
 *                       (Ctrl-C's KeyboardInterrupt): long loops call it between steps (every
 *                       ~1 ms of work or more) and stop with FC_INTERRUPTED.  Cheap: a read of
 *                       the call's flag and a clock read; at most every FC_INTERRUPT_EVERY_NS the
 *                       calling thread asks the binding (which takes the GIL and runs Python's
 *                       signal handlers: one that raises leaves its exception pending for the
 *                       binding).  Pool workers never call into Python: their ranks read the flag
 *                       of the call they work for (one flag per calling thread, so a Ctrl-C
 *                       stops the main thread's call and no other thread's).  A caller waiting
 *                       for workers asks every FC_INTERRUPT_WAIT_MS.
 * fc_interrupt_pending() whether this thread's call was interrupted (for the status at its end).
 * fc_set_signal_check(fn) the binding's check (0: no signal raised); NULL: never interrupted. */
void fc_interrupt_begin(void);
int fc_interrupted(void);
int fc_interrupt_pending(void);
void fc_set_signal_check(int (*check)(void));

/* fn(ctx, lo, hi) on the chunks of a static split of [0, n) into n_threads ranks (fc_team):
 * the common case of independent rows. */
void fc_parallel_range(int n_threads, ptrdiff_t n, void (*fn)(void *ctx, ptrdiff_t lo, ptrdiff_t hi), void *ctx);

/* Chunk k of `parts` equal chunks of [0, n). */
static inline void fc_split(ptrdiff_t n, int parts, int k, ptrdiff_t *lo, ptrdiff_t *hi)
{
    ptrdiff_t q = n / parts, r = n % parts;
    *lo = k * q + (k < r ? k : r);
    *hi = *lo + q + (k < r ? 1 : 0);
}

/* Dynamic scheduling: claims the next index of a counter shared by the team (0 before the
 * team); every index is handed out once, so work items of uneven size balance across
 * ranks, and results computed per item do not depend on which rank took it. */
static inline ptrdiff_t fc_claim(ptrdiff_t *next) { return fc_atomic_fetch_add(next, 1); }

/* Never more threads than work items, never fewer than one. */
static inline int fc_clamp_threads(int n_threads, ptrdiff_t work)
{
    if (work < 1) return 1;
    return (ptrdiff_t)n_threads > work ? (int)work : (n_threads < 1 ? 1 : n_threads);
}

#endif /* FC_PARALLEL_H */
