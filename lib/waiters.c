/* The threads waiting in poll on one socket, and waking them: one eventfd
 * (wake_fd) that every waiter polls, written under the lock.
 *
 * Who drains the eventfd decides whether a wake-up can be lost.  A waiter
 * that drained it as soon as it woke could take the wake-up from another
 * that had already counted itself a waiter but not yet entered poll (it
 * releases the lock first), or that poll had not yet rescanned: that one
 * would then sleep on, past data queued for it or a timer due.  So:
 * - A wake-up is owed to every thread counted a waiter when it is written
 *   (wake_owed of them; a waiter tells by wake_round whether one came since
 *   it entered).
 * - The eventfd stays readable until the last of them has left poll, and
 *   that one drains it, under the lock.  Each of them is either in poll
 *   when it is written (poll returns) or enters poll later (poll returns at
 *   once): none can miss it.
 * - A thread that comes to wait while a wake-up is still owed would find
 *   the eventfd readable and spin; it waits instead until the owed waiters
 *   have left (they need nothing but the lock), and then does not poll:
 *   its caller looks again at the state, which may have changed meanwhile
 *   without anyone waking it, since it was not yet a waiter.
 * After a detach nothing is drained: every later poll returns at once. */
#include <unistd.h>

#include "socket.h"
#include "sys.h"

void dp_wake_waiters(dp_socket *s) {
  if (s->waiters == 0 && !s->detached)
    return;
  s->wake_round++;
  s->wake_owed = s->waiters;
  uint64_t one = 1;
  if (dp_sys()->write(s->wake_fd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is already non-zero, so waiters wake anyway. */
  }
}

/* A call may have armed a timer (a handshake started from another thread)
 * earlier than any waiting thread will wake, or read datagrams whose data
 * the waiters cannot see in poll: a thread that goes on waiting itself (a
 * blocking dtlssendto's handshake) reads them for everyone. */
void dp_wake_waiters_if_needed(dp_socket *s) {
  int untold = s->data_untold;
  s->data_untold = 0; /* a thread that waits later looks at the queue first */
  if (s->waiters > 0 && s->core != NULL &&
      ((untold && dp_endpoint_pending(s->core) > 0) || dp_endpoint_get_expiry(s->core) < s->waiters_deadline))
    dp_wake_waiters(s);
}

int dp_waiter_enter(dp_socket *s, uint64_t wakes_at, unsigned int *round) {
  if (s->wake_owed > 0) {
    while (s->wake_owed > 0)
      pthread_cond_wait(&s->wake_delivered, &s->lock);
    return 0;
  }
  if (s->waiters++ == 0 || wakes_at < s->waiters_deadline)
    s->waiters_deadline = wakes_at;
  *round = s->wake_round;
  return 1;
}

void dp_waiter_leave(dp_socket *s, uint64_t wakes_at, unsigned int round) {
  /* waiters_deadline is never later than the earliest waiter's: when that
   * one leaves, the others' earliest is not known, and any timer wakes them
   * (to enter again, each with its own). */
  if (--s->waiters == 0 || wakes_at <= s->waiters_deadline)
    s->waiters_deadline = UINT64_MAX;
  if (round == s->wake_round || --s->wake_owed > 0)
    return;
  uint64_t drained;
  if (!s->detached && dp_sys()->read(s->wake_fd, &drained, sizeof drained) < 0) {
    /* Cannot fail: it was written, and only the last owed waiter drains it. */
  }
  pthread_cond_broadcast(&s->wake_delivered);
}
