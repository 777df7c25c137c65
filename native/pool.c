/*
 * A small fork-join thread pool for the elementwise and row kernels.
 *
 * One job at a time: the calling thread publishes a job (a function over [0, n) cut into `parts`
 * ranges), wakes the workers and claims ranges itself alongside them; it returns when every range
 * is done. Ranges are claimed one by one from a counter tagged with the job's generation, so a
 * worker that wakes late (the machine is shared and threads get descheduled) can never take a range
 * of a newer job, and the caller never waits for a worker that has not started: if all workers are
 * slow, the caller simply runs every range. Workers spin briefly after a job (back-to-back kernels
 * are common), then sleep on a condition variable, so an idle pool costs no CPU. A second thread
 * that finds the pool busy, or any caller while OpenBLAS is running a matmul, runs its job inline:
 * the pool never adds threads on top of another job's or OpenBLAS's.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "gb.h"

/* ~50 us: a pause is ~80 ns on Zen 4 under KVM; long enough for back-to-back kernels. */
#define SPIN_ITERS 600
/* Ranges per thread: more than one, so threads that keep running take over from preempted ones
 * (or from one that woke late). GEMM tiles take finer ranges: each is long enough that claiming
 * costs nothing beside it, and the split is what balances a thread that started late. */
#define PARTS_PER_THREAD 4
#define TILE_PARTS_PER_THREAD 16

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static struct {
  pthread_mutex_t mu;
  pthread_cond_t work_cv;
  pthread_cond_t done_cv;
  pthread_t *threads;
  int nthreads; /* including the caller; 0 = not started yet */
  atomic_int stop;
  atomic_uint_fast64_t generation; /* id of the last published job */
  atomic_uint_fast64_t claim;      /* (generation << 32) | next range to hand out */
  atomic_int done;                 /* ranges of the current job finished */
  _Atomic(gb_range_fn) fn;
  _Atomic(void *) ctx;
  atomic_int_fast64_t n;
  atomic_int parts;
  atomic_flag busy; /* held by the thread that owns the current job */
  atomic_int blas_active;
} P = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .busy = ATOMIC_FLAG_INIT,
};

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;

/* Claims and runs ranges of job `gen` until none are left (or a newer job has replaced it). */
static void run_ranges(uint_fast64_t gen) {
  gb_range_fn fn = atomic_load_explicit(&P.fn, memory_order_relaxed);
  void *ctx = atomic_load_explicit(&P.ctx, memory_order_relaxed);
  int64_t n = atomic_load_explicit(&P.n, memory_order_relaxed);
  int parts = atomic_load_explicit(&P.parts, memory_order_relaxed);
  uint_fast64_t tag = (gen & 0xffffffffu) << 32;
  uint_fast64_t c = atomic_load_explicit(&P.claim, memory_order_acquire);
  for (;;) {
    /* A successful claim proves the fields read above belong to this job: they are only rewritten
     * after every range of the job is done, and this range was not. */
    if ((c & ~(uint_fast64_t)0xffffffffu) != tag || (int)(c & 0xffffffffu) >= parts) return;
    if (!atomic_compare_exchange_weak_explicit(&P.claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    int p = (int)(c & 0xffffffffu);
    int64_t b = n * p / parts, e = n * (p + 1) / parts;
    if (e > b) fn(ctx, b, e);
    if (atomic_fetch_add_explicit(&P.done, 1, memory_order_acq_rel) + 1 == parts) {
      pthread_mutex_lock(&P.mu);
      pthread_cond_signal(&P.done_cv);
      pthread_mutex_unlock(&P.mu);
    }
    c = atomic_load_explicit(&P.claim, memory_order_acquire);
  }
}

/* `arg` carries the generation current when the thread was created: a job published before the
 * thread first runs must still count as new to it. */
static void *worker(void *arg) {
  uint_fast64_t seen = (uint_fast64_t)(uintptr_t)arg;
  for (;;) {
    for (int i = 0; i < SPIN_ITERS && atomic_load_explicit(&P.generation, memory_order_acquire) == seen; i++)
      cpu_relax();
    if (atomic_load_explicit(&P.generation, memory_order_acquire) == seen) {
      pthread_mutex_lock(&P.mu);
      while (atomic_load(&P.generation) == seen && !atomic_load(&P.stop)) pthread_cond_wait(&P.work_cv, &P.mu);
      pthread_mutex_unlock(&P.mu);
    }
    if (atomic_load(&P.stop)) return NULL;
    seen = atomic_load_explicit(&P.generation, memory_order_acquire);
    run_ranges(seen);
  }
}

static int online_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c > 0) return c;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Caller must own P.busy (or be the only user, during start/stop). */
static void start_workers(int n) {
  if (n < 1) n = 1;
  atomic_store(&P.stop, 0);
  P.threads = n > 1 ? calloc((size_t)(n - 1), sizeof(pthread_t)) : NULL;
  int started = 0;
  void *gen = (void *)(uintptr_t)atomic_load(&P.generation);
  for (int i = 0; i < n - 1 && P.threads; i++) {
    if (pthread_create(&P.threads[i], NULL, worker, gen) != 0) break;
    started++;
  }
  P.nthreads = started + 1;
}

static void stop_workers(void) {
  pthread_mutex_lock(&P.mu);
  atomic_store(&P.stop, 1);
  atomic_fetch_add(&P.generation, 1);
  pthread_cond_broadcast(&P.work_cv);
  pthread_mutex_unlock(&P.mu);
  for (int i = 0; i < P.nthreads - 1; i++) pthread_join(P.threads[i], NULL);
  free(P.threads);
  P.threads = NULL;
  P.nthreads = 0;
}

static void ensure_started(void) {
  if (P.nthreads > 0) return;
  pthread_mutex_lock(&start_mu);
  if (P.nthreads == 0) start_workers(online_cpus());
  pthread_mutex_unlock(&start_mu);
}

int gb_pool_threads(void) {
  ensure_started();
  return P.nthreads;
}

void gb_pool_set_threads(int n) {
  ensure_started();
  while (atomic_flag_test_and_set(&P.busy)) cpu_relax();
  pthread_mutex_lock(&start_mu);
  stop_workers();
  start_workers(n);
  pthread_mutex_unlock(&start_mu);
  atomic_flag_clear(&P.busy);
}

void gb_blas_begin(void) { atomic_fetch_add(&P.blas_active, 1); }
void gb_blas_end(void) { atomic_fetch_sub(&P.blas_active, 1); }

static void parallel(int64_t n, int64_t grain, int parts_per_thread, gb_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  ensure_started();
  int64_t max_parts = n / grain;
  if (P.nthreads < 2 || max_parts < 2 || atomic_load(&P.blas_active) > 0 || atomic_flag_test_and_set(&P.busy)) {
    fn(ctx, 0, n);
    return;
  }
  int64_t want = (int64_t)P.nthreads * parts_per_thread;
  int parts = (int)(max_parts < want ? max_parts : want);
  uint_fast64_t gen = atomic_load(&P.generation) + 1;
  atomic_store_explicit(&P.fn, fn, memory_order_relaxed);
  atomic_store_explicit(&P.ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&P.n, n, memory_order_relaxed);
  atomic_store_explicit(&P.parts, parts, memory_order_relaxed);
  atomic_store_explicit(&P.done, 0, memory_order_relaxed);
  atomic_store_explicit(&P.claim, (gen & 0xffffffffu) << 32, memory_order_release);
  pthread_mutex_lock(&P.mu);
  atomic_store_explicit(&P.generation, gen, memory_order_release);
  pthread_cond_broadcast(&P.work_cv);
  pthread_mutex_unlock(&P.mu);
  run_ranges(gen);
  for (int i = 0; i < SPIN_ITERS && atomic_load(&P.done) < parts; i++) cpu_relax();
  if (atomic_load(&P.done) < parts) {
    pthread_mutex_lock(&P.mu);
    while (atomic_load(&P.done) < parts) pthread_cond_wait(&P.done_cv, &P.mu);
    pthread_mutex_unlock(&P.mu);
  }
  atomic_flag_clear(&P.busy);
}

void gb_parallel_for(int64_t n, int64_t grain, gb_range_fn fn, void *ctx) {
  parallel(n, grain, PARTS_PER_THREAD, fn, ctx);
}

void gb_parallel_tiles(int64_t n, int64_t grain, gb_range_fn fn, void *ctx) {
  parallel(n, grain, TILE_PARTS_PER_THREAD, fn, ctx);
}
