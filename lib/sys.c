#include "sys.h"

#include <dlfcn.h>
#include <pthread.h>

dp_sys_fns dp_sys_table;
atomic_int dp_sys_ready;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

#define NEXT(name) dp_sys_table.name = (__typeof__(dp_sys_table.name))dlsym(RTLD_NEXT, #name)

static void resolve(void) {
  NEXT(sendto), NEXT(recvfrom), NEXT(sendmsg), NEXT(recvmsg), NEXT(sendmmsg), NEXT(recvmmsg);
  NEXT(send), NEXT(recv), NEXT(read), NEXT(write), NEXT(readv), NEXT(writev);
  NEXT(socket), NEXT(socketpair), NEXT(accept), NEXT(accept4), NEXT(dup), NEXT(fcntl), NEXT(bind);
  NEXT(poll), NEXT(ppoll), NEXT(select), NEXT(pselect);
  NEXT(epoll_ctl), NEXT(epoll_wait), NEXT(epoll_pwait), NEXT(epoll_pwait2);
  atomic_store_explicit(&dp_sys_ready, 1, memory_order_release);
}

void dp_sys_resolve(void) { pthread_once(&resolved, resolve); }
