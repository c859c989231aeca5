/* The threads behind fc_team (fc_parallel.h): a small pool whose caller works too.
 *
 * One pool per extension module (this file is compiled into each; its symbols are hidden), so
 * at most one team per module runs at a time; a second caller meanwhile runs its ranks on its
 * own thread.  Workers are started when a team first asks for them and live until the process
 * ends.  A team is published as one 64-bit ticket, generation << 32 | ranks << 16 | next rank,
 * so a worker that read a stale job cannot claim a rank of it: its compare-and-swap fails.
 *
 * Idle workers spin briefly (back-to-back teams, e.g. the iterations of Sinkhorn, find them
 * awake), then sleep on a condition variable, so an idle library uses no CPU.  In the child of a
 * fork() the pool is empty (pthread_atfork) and starts new workers when a team asks for them.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sigset_t under -std=c11 */
#endif
#include "core/fc_parallel.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(_WIN32)
#include <windows.h>
typedef SRWLOCK fc_mutex;
typedef CONDITION_VARIABLE fc_cond;
#define FC_MUTEX_INIT SRWLOCK_INIT
#define FC_COND_INIT CONDITION_VARIABLE_INIT
#define fc_mutex_lock(m) AcquireSRWLockExclusive(m)
#define fc_mutex_unlock(m) ReleaseSRWLockExclusive(m)
#define fc_cond_wait(c, m) SleepConditionVariableSRW((c), (m), INFINITE, 0)
#define fc_cond_wait_ms(c, m, ms) SleepConditionVariableSRW((c), (m), (DWORD)(ms), 0)
#define fc_cond_broadcast(c) WakeAllConditionVariable(c)
#define fc_cpu_relax() YieldProcessor()
#define fc_yield() SwitchToThread()
#else
#include <pthread.h>
#include <sched.h>
#include <signal.h>
typedef pthread_mutex_t fc_mutex;
typedef pthread_cond_t fc_cond;
#define FC_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define FC_COND_INIT PTHREAD_COND_INITIALIZER
#define fc_mutex_lock(m) pthread_mutex_lock(m)
#define fc_mutex_unlock(m) pthread_mutex_unlock(m)
#define fc_cond_wait(c, m) pthread_cond_wait((c), (m))
static void fc_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t); /* the condition variable's default clock */
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec += 1;
        t.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &t);
}
#define fc_cond_broadcast(c) pthread_cond_broadcast(c)
#if defined(__x86_64__) || defined(__i386__)
#define fc_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define fc_cpu_relax() __asm__ __volatile__("yield")
#else
#define fc_cpu_relax() ((void)0)
#endif
#define fc_yield() sched_yield()
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define FC_THREAD_LOCAL __declspec(thread)
#else
#define FC_THREAD_LOCAL _Thread_local
#endif

#define FC_POOL_MAX 255      /* workers at most (a team of n uses n - 1 of them) */
#define FC_POOL_RANKS 65535  /* ranks of one team at most (16 bits of the ticket) */
/* An idle worker keeps polling for a new team this long (a pause per poll, and every
 * FC_POOL_YIELD polls a yield of the CPU to any other runnable thread), then sleeps: teams that
 * follow each other within that time (Sinkhorn's iterations, a training loop, a 1-thread call
 * between two threaded ones) find it awake.  Waking a sleeping thread costs far more than a
 * futex call on a virtual machine (the host must wake a halted virtual CPU: measured here, a
 * threaded call of 0.7 ms ran no faster than one thread when its worker had to be woken), and
 * the yields make the spinning cheap for an oversubscribed machine. */
#ifndef FC_POOL_SPIN_NS
#define FC_POOL_SPIN_NS 2000000
#endif
#ifndef FC_POOL_YIELD
#define FC_POOL_YIELD 32
#endif
/* A caller whose own ranks are done polls this long for the ranks still running on workers,
 * then sleeps: its core is then free for a worker the OS had to preempt (Linux moves a runnable
 * thread to a core that goes idle), which is what a busy machine needs. */
#ifndef FC_POOL_WAIT_NS
#define FC_POOL_WAIT_NS 50000
#endif

#if defined(_WIN32)
static long long fc_now_ns(void)
{
    static LARGE_INTEGER freq; /* written once with the same value by any thread */
    LARGE_INTEGER t;
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (long long)((double)t.QuadPart * 1e9 / (double)freq.QuadPart);
}
#else
#include <time.h>
static long long fc_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
#endif

typedef struct {
    fc_mutex lock;
    fc_cond wake;           /* workers sleep here */
    fc_cond finished;       /* a caller waiting for ranks still running sleeps here */
    unsigned wake_seq;      /* under lock: bumped for each team published to sleepers */
    int nworkers;           /* workers started (written under lock) */
    int sleepers;           /* workers asleep or about to sleep */
    int busy;               /* a caller owns the pool (0 / 1) */
    unsigned long long ticket;
    void *fn, *arg;         /* the team's body (a function pointer stored as void *) and its state */
    void *flag;             /* the calling thread's interrupt flag (int *), for the workers' ranks */
    int done;               /* ranks finished */
} fc_pool_t;

static fc_pool_t fc_pool = {FC_MUTEX_INIT, FC_COND_INIT, FC_COND_INIT, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0};

static FC_THREAD_LOCAL int fc_rank = 0, fc_nranks = 1, fc_in_team = 0, fc_is_worker = 0;
/* Ctrl-C (see the end of this file): each thread that calls a kernel owns a flag for that call;
 * a worker running one of its ranks points at it. */
static FC_THREAD_LOCAL int fc_call_flag = 0;
static FC_THREAD_LOCAL int *fc_rank_flag = NULL;
static int *fc_current_flag(void) { return fc_is_worker ? fc_rank_flag : &fc_call_flag; }
/* set by fc_interrupt_begin, taken by the next fc_team of this thread: only the team of an
 * entry point that checks for signals (and maps FC_INTERRUPTED) may ask while it waits */
static FC_THREAD_LOCAL int fc_ask_next_team = 0;

int fc_thread_id(void) { return fc_rank; }
int fc_thread_count(void) { return fc_nranks; }

typedef void (*fc_body)(void *);

static int fc_interrupt_can_ask(void);
#ifndef FC_INTERRUPT_WAIT_MS
#define FC_INTERRUPT_WAIT_MS 20 /* a caller waiting for workers asks for signals this often */
#endif

static void fc_run_rank(fc_body fn, void *arg, int rank, int n)
{
    const int r0 = fc_rank, n0 = fc_nranks, in0 = fc_in_team;
    fc_rank = rank;
    fc_nranks = n;
    fc_in_team = 1;
    fn(arg);
    fc_rank = r0;
    fc_nranks = n0;
    fc_in_team = in0;
}

static int fc_ticket_open(unsigned long long t) { return (t & 0xffffu) < ((t >> 16) & 0xffffu); }

/* Claims and runs one rank of the current team; 0 when none is left. */
static int fc_pool_run_one(void)
{
    for (;;) {
        unsigned long long t = fc_atomic_load_u64(&fc_pool.ticket);
        if (!fc_ticket_open(t)) return 0;
        fc_body fn = (fc_body)fc_atomic_load_ptr(&fc_pool.fn);
        void *arg = fc_atomic_load_ptr(&fc_pool.arg);
        int *flag = (int *)fc_atomic_load_ptr(&fc_pool.flag);
        if (!fc_atomic_cas_u64(&fc_pool.ticket, t, t + 1)) continue; /* taken, or a newer team */
        const int n = (int)((t >> 16) & 0xffffu);
        int *const flag0 = fc_rank_flag;
        if (fc_is_worker) fc_rank_flag = flag;
        fc_run_rank(fn, arg, (int)(t & 0xffffu), n);
        fc_rank_flag = flag0;
        if (fc_atomic_fetch_add_int(&fc_pool.done, 1) + 1 == n) {
            fc_mutex_lock(&fc_pool.lock);
            fc_cond_broadcast(&fc_pool.finished);
            fc_mutex_unlock(&fc_pool.lock);
        }
        return 1;
    }
}

static void fc_pool_worker(void)
{
    fc_in_team = 1; /* a team started from inside a rank runs on that thread */
    fc_is_worker = 1;
    for (;;) {
        if (fc_pool_run_one()) continue;
        int found = 0;
        const long long until = fc_now_ns() + FC_POOL_SPIN_NS;
        for (int i = 1; !found; ++i) {
            if (i % FC_POOL_YIELD == 0) {
                if (fc_now_ns() > until) break;
                fc_yield();
            } else {
                fc_cpu_relax();
            }
            found = fc_ticket_open(fc_atomic_load_u64(&fc_pool.ticket));
        }
        if (found) continue;
        fc_mutex_lock(&fc_pool.lock);
        unsigned seq = fc_pool.wake_seq;
        fc_atomic_fetch_add_int(&fc_pool.sleepers, 1);
        while (seq == fc_pool.wake_seq && !fc_ticket_open(fc_atomic_load_u64(&fc_pool.ticket)))
            fc_cond_wait(&fc_pool.wake, &fc_pool.lock);
        fc_atomic_fetch_add_int(&fc_pool.sleepers, -1);
        fc_mutex_unlock(&fc_pool.lock);
    }
}

#if defined(_WIN32)
static DWORD WINAPI fc_pool_main(LPVOID unused)
{
    (void)unused;
    fc_pool_worker();
    return 0;
}

static int fc_pool_start_one(void)
{
    HANDLE h = CreateThread(NULL, 0, fc_pool_main, NULL, 0, NULL);
    if (h == NULL) return 0;
    CloseHandle(h);
    return 1;
}
#else
static void *fc_pool_main(void *unused)
{
    (void)unused;
    fc_pool_worker();
    return NULL;
}

/* In the child of a fork() the workers do not exist: forget them (the child's first team
 * starts new ones).  Whatever team was running belongs to the parent. */
static void fc_pool_after_fork_child(void)
{
    fc_pool_t fresh = {FC_MUTEX_INIT, FC_COND_INIT, FC_COND_INIT, 0, 0, 0, 0, 0, NULL, NULL, 0};
    fc_pool = fresh;
    fc_rank = 0;
    fc_nranks = 1;
    fc_in_team = 0;
}

static pthread_once_t fc_pool_once = PTHREAD_ONCE_INIT;
static void fc_pool_register_fork(void) { pthread_atfork(NULL, NULL, fc_pool_after_fork_child); }

static int fc_pool_start_one(void)
{
    pthread_once(&fc_pool_once, fc_pool_register_fork);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return 0;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* workers block every signal: Ctrl-C and friends go to the interpreter's threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int ok = pthread_create(&th, &attr, fc_pool_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return ok;
}
#endif

/* Starts workers until there are `want` (or as many as the system gives); returns how many. */
static int fc_pool_grow(int want)
{
    if (want > FC_POOL_MAX) want = FC_POOL_MAX;
    if (fc_atomic_load_int(&fc_pool.nworkers) >= want) return want;
    fc_mutex_lock(&fc_pool.lock);
    while (fc_pool.nworkers < want && fc_pool_start_one())
        fc_atomic_store_int(&fc_pool.nworkers, fc_pool.nworkers + 1);
    int have = fc_pool.nworkers;
    fc_mutex_unlock(&fc_pool.lock);
    return have;
}

void fc_team(int n, void (*fn)(void *), void *arg)
{
    const int ask = fc_ask_next_team;
    fc_ask_next_team = 0;
    if (n > FC_POOL_RANKS) n = FC_POOL_RANKS;
    if (n <= 1 || fc_in_team || !fc_atomic_cas_int(&fc_pool.busy, 0, 1)) {
        for (int r = 0; r < (n < 1 ? 1 : n); ++r) fc_run_rank(fn, arg, r, n < 1 ? 1 : n);
        return;
    }
    if (fc_pool_grow(n - 1) < 1) { /* no threads to be had: the caller does it all */
        fc_atomic_store_int(&fc_pool.busy, 0);
        for (int r = 0; r < n; ++r) fc_run_rank(fn, arg, r, n);
        return;
    }
    /* publish: the body, a zero count, then the ticket of a new generation */
    fc_atomic_store_ptr(&fc_pool.fn, (void *)fn);
    fc_atomic_store_ptr(&fc_pool.arg, arg);
    fc_atomic_store_ptr(&fc_pool.flag, (void *)fc_current_flag());
    fc_atomic_store_int(&fc_pool.done, 0);
    unsigned long long gen = (fc_atomic_load_u64(&fc_pool.ticket) >> 32) + 1;
    fc_atomic_store_u64(&fc_pool.ticket, (gen << 32) | ((unsigned long long)n << 16));
    if (fc_atomic_load_int(&fc_pool.sleepers) > 0) {
        fc_mutex_lock(&fc_pool.lock);
        fc_pool.wake_seq++;
        fc_cond_broadcast(&fc_pool.wake);
        fc_mutex_unlock(&fc_pool.lock);
    }
    while (fc_pool_run_one()) {
    }
    /* every rank is claimed; wait only for ranks that are running on workers */
    const long long until = fc_now_ns() + FC_POOL_WAIT_NS;
    for (int i = 1; fc_atomic_load_int(&fc_pool.done) < n; ++i) {
        fc_cpu_relax();
        if (i % FC_POOL_YIELD == 0 && fc_now_ns() > until) break;
    }
    if (fc_atomic_load_int(&fc_pool.done) < n) {
        /* a caller that waits still notices Ctrl-C (fc_interrupted sets its flag, which the
         * workers' ranks read): it wakes every FC_INTERRUPT_WAIT_MS to ask */
        const int asking = ask && fc_interrupt_can_ask();
        fc_mutex_lock(&fc_pool.lock);
        while (fc_atomic_load_int(&fc_pool.done) < n) {
            if (!asking) {
                fc_cond_wait(&fc_pool.finished, &fc_pool.lock);
                continue;
            }
            fc_cond_wait_ms(&fc_pool.finished, &fc_pool.lock, FC_INTERRUPT_WAIT_MS);
            if (fc_atomic_load_int(&fc_pool.done) < n) {
                fc_mutex_unlock(&fc_pool.lock); /* never call into Python holding the pool's lock */
                (void)fc_interrupted();
                fc_mutex_lock(&fc_pool.lock);
            }
        }
        fc_mutex_unlock(&fc_pool.lock);
    }
    fc_atomic_store_int(&fc_pool.busy, 0);
}

typedef struct {
    void (*fn)(void *, ptrdiff_t, ptrdiff_t);
    void *ctx;
    ptrdiff_t n;
} fc_range_job;

static void fc_range_team(void *arg)
{
    const fc_range_job *job = arg;
    ptrdiff_t lo, hi;
    fc_split(job->n, fc_thread_count(), fc_thread_id(), &lo, &hi);
    if (lo < hi) job->fn(job->ctx, lo, hi);
}

void fc_parallel_range(int n_threads, ptrdiff_t n, void (*fn)(void *ctx, ptrdiff_t lo, ptrdiff_t hi), void *ctx)
{
    fc_range_job job = {fn, ctx, n};
    fc_team(fc_clamp_threads(n_threads, n), fc_range_team, &job);
}

/* ------------------------------------------------------------------ Ctrl-C (fc_parallel.h) */
/* How often the thread that called a kernel asks the binding for signals: 20 per second keeps
 * Ctrl-C well under the 0.5 s users expect, and the GIL round trip out of the hot loops. */
#ifndef FC_INTERRUPT_EVERY_NS
#define FC_INTERRUPT_EVERY_NS 50000000LL
#endif

static int (*fc_signal_check)(void);
static FC_THREAD_LOCAL long long fc_next_signal_check;

void fc_set_signal_check(int (*check)(void)) { fc_signal_check = check; }

static int fc_interrupt_can_ask(void) { return !fc_is_worker && fc_signal_check != NULL; }

void fc_interrupt_begin(void)
{
    fc_atomic_store_int(&fc_call_flag, 0);
    fc_next_signal_check = fc_now_ns() + FC_INTERRUPT_EVERY_NS;
    fc_ask_next_team = 1;
}

int fc_interrupt_pending(void) { return fc_atomic_load_int(&fc_call_flag); }

int fc_interrupted(void)
{
    int *flag = fc_current_flag();
    if (flag != NULL && fc_atomic_load_int(flag)) return 1;
    if (!fc_interrupt_can_ask()) return 0;
    const long long now = fc_now_ns();
    if (now < fc_next_signal_check) return 0;
    fc_next_signal_check = now + FC_INTERRUPT_EVERY_NS;
    if (!fc_signal_check()) return 0;
    fc_atomic_store_int(&fc_call_flag, 1);
    return 1;
}
