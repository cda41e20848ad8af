#include "once.h"

int dp_once_run(dp_once *once, int (*init)(void)) {
  if (atomic_load_explicit(&once->done, memory_order_acquire))
    return 0;
  pthread_mutex_lock(&once->lock);
  int r = atomic_load_explicit(&once->done, memory_order_relaxed) ? 0 : init();
  if (r == 0)
    atomic_store_explicit(&once->done, 1, memory_order_release);
  pthread_mutex_unlock(&once->lock);
  return r;
}
