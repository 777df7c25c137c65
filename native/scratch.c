/*
 * Per-thread scratch buffers for the GEMM kernels: the bf16 copy of A, packed B panels.
 *
 * Each kernel call used to malloc and free these. Freed multi-megabyte blocks raise glibc's dynamic
 * mmap threshold, after which such blocks come from the heap and stay there, fragmented (resident,
 * never returned). A buffer kept per thread and slot, grown when a call needs more, costs one
 * allocation per thread instead. Buffers above GB_SCRATCH_KEEP are not kept: they are allocated
 * for the call and freed (rare: a prompt of thousands of tokens through a wide projection).
 * A thread's buffers are freed when it exits (pool threads when the pool is resized).
 */
#include <pthread.h>
#include <stdlib.h>

#include "gb.h"

#define GB_SCRATCH_KEEP ((size_t)8 << 20)

typedef struct {
  void *p[GB_SCRATCH_SLOTS];
  size_t cap[GB_SCRATCH_SLOTS];
} slots;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release(void *v) {
  slots *s = v;
  for (int i = 0; i < GB_SCRATCH_SLOTS; i++) free(s->p[i]);
  free(s);
}

static void make_key(void) { pthread_key_create(&key, release); }

void *gb_scratch(int slot, size_t bytes) {
  pthread_once(&once, make_key);
  bytes = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
  if (bytes > GB_SCRATCH_KEEP) return aligned_alloc(64, bytes);
  slots *s = pthread_getspecific(key);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || pthread_setspecific(key, s) != 0) {
      free(s);
      return NULL;
    }
  }
  if (s->cap[slot] < bytes) {
    free(s->p[slot]);
    s->p[slot] = aligned_alloc(64, bytes);
    s->cap[slot] = s->p[slot] ? bytes : 0;
  }
  return s->p[slot];
}

void gb_scratch_done(int slot, void *p) {
  pthread_once(&once, make_key);
  slots *s = pthread_getspecific(key);
  if (!s || s->p[slot] != p) free(p);
}
