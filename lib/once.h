/* One-time setup that may fail for want of memory.  pthread_once keeps a
 * failure for the life of the process: no configuration, session or
 * handshake would ever be made again.  Here the next caller tries again. */
#ifndef DTLSPLEX_ONCE_H
#define DTLSPLEX_ONCE_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct dp_once {
  pthread_mutex_t lock;
  atomic_int done;
} dp_once;

#define DP_ONCE_INIT {PTHREAD_MUTEX_INITIALIZER, 0}

/* Runs init (0 or -1) unless it has already succeeded: 0 once it has. */
int dp_once_run(dp_once *once, int (*init)(void));

#endif
