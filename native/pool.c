/*
 * A small fork-join thread pool for the elementwise and row kernels.
 *
 * One job at a time: the calling thread publishes a job, wakes every worker, takes ranges itself and
 * waits for all workers to check in. Workers spin briefly after a job (back-to-back kernels are
 * common) and then sleep on a condition variable, so an idle pool costs no CPU. A second thread that
 * finds the pool busy, or any caller while OpenBLAS is running a matmul, runs its job inline: the
 * pool never adds threads on top of another job's or OpenBLAS's.
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

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

typedef struct {
  gb_range_fn fn;
  void *ctx;
  int64_t n;
  int parts;
  atomic_int next;
} job_t;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t work_cv;
  pthread_cond_t done_cv;
  pthread_t *threads;
  int nthreads; /* including the caller; 0 = not started yet */
  atomic_int stop;
  atomic_uint_fast64_t generation;
  atomic_int remaining; /* workers that have not checked in for the current job */
  atomic_flag busy;     /* held by the thread that owns the current job */
  atomic_int blas_active;
  job_t job;
} P = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .busy = ATOMIC_FLAG_INIT,
};

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;

static void run_parts(job_t *j) {
  for (;;) {
    int p = atomic_fetch_add(&j->next, 1);
    if (p >= j->parts) return;
    int64_t b = j->n * p / j->parts, e = j->n * (p + 1) / j->parts;
    if (e > b) j->fn(j->ctx, b, e);
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
    seen = atomic_load(&P.generation);
    run_parts(&P.job);
    if (atomic_fetch_sub(&P.remaining, 1) == 1) {
      pthread_mutex_lock(&P.mu);
      pthread_cond_signal(&P.done_cv);
      pthread_mutex_unlock(&P.mu);
    }
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

void gb_parallel_for(int64_t n, int64_t grain, gb_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  ensure_started();
  int64_t max_parts = n / grain;
  if (P.nthreads < 2 || max_parts < 2 || atomic_load(&P.blas_active) > 0 || atomic_flag_test_and_set(&P.busy)) {
    fn(ctx, 0, n);
    return;
  }
  job_t *j = &P.job;
  j->fn = fn;
  j->ctx = ctx;
  j->n = n;
  j->parts = max_parts < P.nthreads ? (int)max_parts : P.nthreads;
  atomic_store(&j->next, 0);
  atomic_store(&P.remaining, P.nthreads - 1);
  pthread_mutex_lock(&P.mu);
  atomic_fetch_add_explicit(&P.generation, 1, memory_order_release);
  pthread_cond_broadcast(&P.work_cv);
  pthread_mutex_unlock(&P.mu);
  run_parts(j);
  for (int i = 0; i < SPIN_ITERS && atomic_load(&P.remaining) > 0; i++) cpu_relax();
  if (atomic_load(&P.remaining) > 0) {
    pthread_mutex_lock(&P.mu);
    while (atomic_load(&P.remaining) > 0) pthread_cond_wait(&P.done_cv, &P.mu);
    pthread_mutex_unlock(&P.mu);
  }
  atomic_flag_clear(&P.busy);
}
