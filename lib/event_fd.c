/* One descriptor for event loops: readable whenever the program should call
 * dtlsplex_process or dtlsrecvfrom.  An epoll instance holds the socket
 * (a datagram arrived), a timerfd armed at the core's next deadline
 * (retransmission, handshake timeout, idle expiry, buffer release) and an
 * eventfd set while decrypted data waits in the library, which the socket's
 * own readiness cannot show.  Made on demand: a program that never asks
 * pays nothing. */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "socket.h"
#include "sys.h"

static int watch(int epfd, int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  return dp_sys()->epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int dp_event_fd_open(dp_socket *s) {
  if (s->ev_epoll >= 0)
    return s->ev_epoll;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  int timer = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK); /* the core's clock */
  int data = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epfd < 0 || timer < 0 || data < 0 || watch(epfd, s->fd) != 0 || watch(epfd, timer) != 0 ||
      watch(epfd, data) != 0) {
    int err = errno;
    for (int i = 0, fds[3] = {epfd, timer, data}; i < 3; i++)
      if (fds[i] >= 0)
        dp_real_close(fds[i]);
    return -err;
  }
  s->ev_epoll = epfd;
  s->ev_timer = timer;
  s->ev_data = data;
  s->ev_armed = 0; /* not armed: the first update arms it */
  s->ev_data_set = 0;
  dp_event_fd_update(s);
  return epfd;
}

void dp_event_fd_update(dp_socket *s) {
  if (s->ev_epoll < 0 || s->core == NULL)
    return;
  int queued = dp_endpoint_pending(s->core) > 0;
  uint64_t value = 1;
  if (queued && !s->ev_data_set)
    s->ev_data_set = dp_sys()->write(s->ev_data, &value, sizeof value) == sizeof value;
  else if (!queued && s->ev_data_set)
    s->ev_data_set = !(dp_sys()->read(s->ev_data, &value, sizeof value) == sizeof value);
  /* Re-arming also clears a timer that fired: a deadline the call moved on
   * leaves the descriptor quiet until the new one. */
  uint64_t deadline = dp_endpoint_get_expiry(s->core);
  if (deadline == s->ev_armed && deadline > dp_now_ms())
    return;
  struct itimerspec when = {0}; /* all zero: disarmed, no timer runs */
  if (deadline != UINT64_MAX) {
    when.it_value.tv_sec = (time_t)(deadline / 1000);
    when.it_value.tv_nsec = (long)(deadline % 1000) * 1000000L;
    if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0)
      when.it_value.tv_nsec = 1; /* due at once, but armed */
  }
  if (timerfd_settime(s->ev_timer, TFD_TIMER_ABSTIME, &when, NULL) == 0)
    s->ev_armed = deadline;
}

void dp_event_fd_close(dp_socket *s) {
  if (s->ev_epoll < 0)
    return;
  dp_real_close(s->ev_epoll);
  dp_real_close(s->ev_timer);
  dp_real_close(s->ev_data);
  s->ev_epoll = -1;
}
