/* How allocations are made to fail (see alloc_fail.h).
 *
 * The library's own allocations: the test program is linked with the
 * library's sources and -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=strdup,--wrap=free, so that every call to those in lib/ (uthash's
 * included: its macros call malloc) comes here, and __real_malloc is
 * whatever malloc the process has: glibc's in a plain build,
 * AddressSanitizer's in a sanitized one, which then still sees every block
 * (a malloc defined in the program would hide them from it).  It needs no
 * change to the library, and a call added to lib/ later is covered as it
 * is.  Calls of the C library's own (fopen, opendir) are not: the library
 * makes none on the paths tested here.
 *
 * OpenSSL's: CRYPTO_set_mem_functions, which only works before OpenSSL's
 * first allocation.
 *
 * Single-threaded: the tests drive every socket from one thread. */
#include "alloc_fail.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static unsigned long counted, fail_nth;
static int counting, injected;
static unsigned int paused; /* pauses not yet resumed */

/* Whether this allocation is the one to fail. */
static int fails(void) {
  if (!counting || paused)
    return 0;
  if (++counted != fail_nth)
    return 0;
  injected = 1;
  return 1;
}

void alloc_fail_count(unsigned long nth) {
  counted = 0;
  fail_nth = nth;
  counting = 1;
  paused = 0;
  injected = 0;
}

void alloc_fail_pause(void) { paused++; }
void alloc_fail_resume(void) { paused--; }
void alloc_fail_stop(void) { counting = 0; }

/* The blocks live since the run began, in an open-addressed table.  The
 * addresses are kept scrambled: LeakSanitizer reads the program's data for
 * pointers, and would take a block the table points to for one still in
 * use. */
#define TRACK_SLOTS (1u << 16)
#define SCRAMBLE ((uintptr_t)0x5a5a5a5a5a5a5a5bULL) /* odd: no aligned block scrambles to 0, the empty slot */
typedef struct slot {
  uintptr_t key;
  size_t size;
  /* Where it was allocated, to name a block left over: OpenSSL's file
   * and line, or the caller in the library. */
  const char *file;
  int line;
  const void *caller;
} slot;
static slot tracked[TRACK_SLOTS];
static size_t live_blocks;

static size_t slot_of(uintptr_t key) { return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 40) % TRACK_SLOTS; }

static void track(void *p, size_t size, const char *file, int line, const void *caller) {
  if (p == NULL)
    return;
  if (live_blocks + 1 == TRACK_SLOTS)
    ck_abort_msg("alloc_fail: more live blocks than the table holds");
  uintptr_t key = (uintptr_t)p ^ SCRAMBLE;
  size_t i = slot_of(key);
  while (tracked[i].key != 0)
    i = (i + 1) % TRACK_SLOTS;
  tracked[i] = (slot){.key = key, .size = size, .file = file, .line = line, .caller = caller};
  live_blocks++;
}

/* Forgets p if it is tracked (a block from before the run is not). */
static void untrack(void *p) {
  if (p == NULL || live_blocks == 0)
    return;
  uintptr_t key = (uintptr_t)p ^ SCRAMBLE;
  size_t i = slot_of(key);
  while (tracked[i].key != key) {
    if (tracked[i].key == 0)
      return;
    i = (i + 1) % TRACK_SLOTS;
  }
  live_blocks--;
  tracked[i].key = 0;
  /* Linear probing: move up the entries after the hole that probed past it. */
  for (size_t j = (i + 1) % TRACK_SLOTS; tracked[j].key != 0; j = (j + 1) % TRACK_SLOTS) {
    size_t home = slot_of(tracked[j].key);
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      tracked[i] = tracked[j];
      tracked[j].key = 0;
      i = j;
    }
  }
}

static void track_reset(void) {
  memset(tracked, 0, sizeof tracked);
  live_blocks = 0;
}

static void *allocate(size_t n, const char *file, int line, const void *caller) {
  if (fails())
    return NULL;
  void *p = __real_malloc(n);
  track(p, n, file, line, caller);
  return p;
}

static void *reallocate(void *p, size_t n, const char *file, int line, const void *caller) {
  if (n > 0 && fails())
    return NULL; /* p stays as it was */
  void *q = __real_realloc(p, n);
  if (q != NULL || n == 0) {
    untrack(p);
    track(q, n, file, line, caller);
  }
  return q;
}

void *__wrap_malloc(size_t n) { return allocate(n, NULL, 0, __builtin_return_address(0)); }

void *__wrap_calloc(size_t n, size_t size) {
  if (fails())
    return NULL;
  void *p = __real_calloc(n, size);
  track(p, n * size, NULL, 0, __builtin_return_address(0));
  return p;
}

void *__wrap_realloc(void *p, size_t n) { return reallocate(p, n, NULL, 0, __builtin_return_address(0)); }

char *__wrap_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = allocate(n, NULL, 0, __builtin_return_address(0));
  if (copy != NULL)
    memcpy(copy, s, n);
  return copy;
}

void __wrap_free(void *p) {
  untrack(p);
  __real_free(p);
}

static void *crypto_malloc(size_t n, const char *file, int line) { return allocate(n, file, line, NULL); }

static void *crypto_realloc(void *p, size_t n, const char *file, int line) {
  return reallocate(p, n, file, line, NULL);
}

static void crypto_free(void *p, const char *file, int line) {
  (void)file, (void)line;
  __wrap_free(p);
}

void alloc_fail_install(void) {
  if (CRYPTO_set_mem_functions(crypto_malloc, crypto_realloc, crypto_free) != 1) {
    fprintf(stderr, "alloc_fail: OpenSSL allocated before alloc_fail_install\n");
    abort();
  }
}

#define MAX_POINTS 100000

/* A block of OpenSSL's process-wide caches: a run whose failure kept an
 * algorithm out of the cache fills it again later in the run, and the
 * entry lasts as long as the process (as do those the first run made). */
static int in_process_cache(const slot *b) {
  return b->file != NULL && strstr(b->file, "crypto/property/") != NULL;
}

/* Fails the test if the run left a block allocated, naming one. */
static void check_all_freed(const char *name, unsigned long nth) {
  const slot *left = NULL;
  size_t blocks = 0, bytes = 0;
  for (size_t i = 0; i < TRACK_SLOTS; i++) {
    if (tracked[i].key == 0 || in_process_cache(&tracked[i]))
      continue;
    left = &tracked[i];
    blocks++;
    bytes += left->size;
  }
  ck_assert_msg(left == NULL, "%s, allocation %lu failed: %zu blocks (%zu bytes) not freed, one of %zu bytes from %s:%d (caller %p)",
                name, nth, blocks, bytes, left->size, left->file != NULL ? left->file : "the library", left->line,
                left->caller);
}

unsigned long alloc_fail_sweep(const char *name, void (*run)(unsigned long nth, void *arg), void *arg) {
  /* A first run with nothing failing fills OpenSSL's caches, which last
   * as long as the process. */
  run(0, arg);
  OPENSSL_thread_stop();
  unsigned long nth;
  for (nth = 1;; nth++) {
    ck_assert_msg(nth <= MAX_POINTS, "%s: more than %d allocations", name, MAX_POINTS);
    track_reset();
    run(nth, arg);
    /* The thread's error queue keeps the text of its errors for the next
     * ones: given back as at the end of any thread. */
    OPENSSL_thread_stop();
    check_all_freed(name, nth);
    if (!injected)
      break;
  }
  printf("%s: %lu injection points\n", name, nth - 1);
  fflush(stdout);
  return nth - 1;
}
