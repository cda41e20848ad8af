#include "endpoint.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <utlist.h>

#include "config.h"
#include "client_hello.h"
#include "cookie.h"
#include "peer_table.h"
#include "recv_queue.h"
#include "session.h"
#include "ticket.h"
#include "sources.h"

#define DTLS_RECORD_HEADER_LEN 13
/* An established peer silent this long gives its record buffers back. */
#define RELEASE_BUFFERS_AFTER_MS 2000
#define TRIM_AFTER_RELEASES 256

/* A remote address the endpoint knows.  Without a session it is a name set
 * before connecting, an address this side is the client of (see
 * client_only), or a failed client handshake kept until the next dtlssendto
 * reports it. */
typedef struct dp_peer {
  dp_table_entry entry; /* first: a table entry is its peer */
  dp_addr addr;
  dp_session *session;
  dp_session *replacement;     /* a reconnecting client's handshake (RFC 6347 4.2.8) */
  uint64_t replacement_deadline;
  /* The reconnecting client sent more than its ClientHello.  Until then the
   * replacement sends one flight and no retransmission: the ClientHello may
   * be a replay, with a cookie still valid, by anyone who saw it. */
  int replacement_answered;
  char *server_name;
  /* The program named this address or sent to it as its client: it must be
   * authenticated as a server, so handshakes it starts are refused (a
   * session accepted from it would authenticate nothing; issue 18). */
  int client_only;
  /* The program has heard of the server-side session: it read a datagram
   * from it or was told it connected.  Until then, with both roles, a
   * dtlssendto to the address makes this side its client instead. */
  int known_to_program;
  int failed_error;
  uint64_t handshake_deadline; /* while handshaking */
  uint64_t last_activity;      /* idle expiry counts from here */
  uint64_t last_heard;         /* the last datagram a session read something from */
  uint64_t forget_at;          /* for a failed handshake awaiting report */
  uint64_t release_tried;      /* last attempt to release idle buffers */
  /* A session this side accepted counts against its source (sources.h):
   * what it holds there now, and the order of activity among established
   * ones, least recent first, for eviction when the table is full. */
  dp_source *source;
  unsigned char held_sessions, held_handshakes;
  int evictable;
  struct dp_peer *lru_prev, *lru_next;
} dp_peer;

struct dp_endpoint {
  dtlsplex_config *cfg;
  int serves; /* server role, and a certificate or PSK to serve with */
  int both_roles; /* serves, and may start handshakes too */
  dp_send_fn send;
  void *send_arg;
  dp_peer_table peers;
  dp_sources sources;
  dp_peer *lru; /* evictable peers, least recently active first (utlist) */
  size_t sessions;   /* peers with a session */
  size_t handshakes; /* of those, handshaking */
  dp_cookie_keys cookies;
  dp_listener listener;
  dp_bio_io io;       /* what every session's BIO starts from */
  unsigned int queue_mtu; /* largest datagram queued while handshaking */
  dp_outbuf out;      /* the datagram being assembled, shared by all sessions */
  dp_recv_queue received;
  /* A datagram from a peer was lost for want of memory (its session's
   * buffers, or a place in the queue): the receive that finds the queue
   * empty says so. */
  int lost_for_memory;
  unsigned int released_since_trim;
  dp_event *events;
  size_t events_len, events_cap;
  const dp_addr *delivering_from;
  const dp_local *arrived_at; /* where the datagram being read arrived */
  uint64_t now;               /* the latest time a caller gave */
  struct dtlsplex_stats stats;
  uint8_t scratch[DP_RECORDS_WORK_MAX]; /* one record opened, its plaintext */
};

static dp_peer *peer_of(dp_table_entry *e) { return (dp_peer *)e; }

/* A share of a limit, rounded up, and at least one. */
static unsigned int share_of(unsigned int limit, unsigned int percent) {
  unsigned int share = (unsigned int)(((uint64_t)limit * percent + 99) / 100);
  return share > 0 ? share : 1;
}

static dp_source_limits source_limits(const dtlsplex_config *cfg) {
  return (dp_source_limits){.v4_prefix = cfg->source_v4_prefix,
                            .v6_prefix = cfg->source_v6_prefix,
                            .max_sessions = share_of(cfg->max_peers, cfg->source_share_percent),
                            .max_handshakes = share_of(cfg->max_handshakes, cfg->source_share_percent),
                            .per_second = cfg->budget_per_second,
                            .burst = cfg->budget_burst};
}

/* Activity either way: idle expiry counts from here, and the peer is the
 * last one eviction would choose. */
static void active(dp_endpoint *ep, dp_peer *p, uint64_t now) {
  p->last_activity = now;
  if (p->evictable && ep->lru->lru_prev != p) { /* utlist: the head's prev is the newest */
    DL_DELETE2(ep->lru, p, lru_prev, lru_next);
    DL_APPEND2(ep->lru, p, lru_prev, lru_next);
  }
}

/* Brings the peer's source counts and its place among the evictable in line
 * with its sessions.  Called wherever they may have changed; costs two
 * comparisons when nothing did. */
static void account(dp_endpoint *ep, dp_peer *p) {
  const dp_session *s = p->session;
  int accepted = s != NULL && !s->is_client;
  int sessions = accepted, handshakes = (accepted && p->handshake_deadline != 0) + (p->replacement != NULL);
  if (p->source != NULL && (sessions != p->held_sessions || handshakes != p->held_handshakes)) {
    dp_source *src = dp_sources_adjust(&ep->sources, p->source, sessions - p->held_sessions,
                                       handshakes - p->held_handshakes, ep->now);
    p->source = sessions + handshakes > 0 ? src : NULL;
  }
  p->held_sessions = p->source != NULL ? (unsigned char)sessions : 0;
  p->held_handshakes = p->source != NULL ? (unsigned char)handshakes : 0;
  int evictable = accepted && s->state == DP_SESSION_ESTABLISHED;
  if (evictable != p->evictable) {
    if (evictable)
      DL_APPEND2(ep->lru, p, lru_prev, lru_next);
    else
      DL_DELETE2(ep->lru, p, lru_prev, lru_next);
    p->evictable = evictable;
  }
}

static dp_peer *find_peer(dp_endpoint *ep, const dp_addr *addr) {
  dp_table_entry *e = dp_table_find(&ep->peers, &addr->key);
  return e != NULL ? peer_of(e) : NULL;
}

dp_session *dp_endpoint_session(dp_endpoint *ep, const dp_addr *peer) {
  dp_peer *p = find_peer(ep, peer);
  return p != NULL ? p->session : NULL;
}

/* Every datagram out passes here, for the statistics. */
static int counting_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  dp_endpoint *ep = arg;
  int r = ep->send(ep->send_arg, to, source, data, len);
  if (r == 0) {
    ep->stats.datagrams_out++;
    ep->stats.bytes_out += len;
  }
  return r;
}

static void emit(dp_endpoint *ep, int event, const dp_addr *peer, int error) {
  if (ep->cfg->event_fn == NULL)
    return;
  if (ep->events_len == ep->events_cap) {
    size_t cap = ep->events_cap ? ep->events_cap * 2 : 8;
    dp_event *events = realloc(ep->events, cap * sizeof *events);
    if (events == NULL) {
      dp_log(ep->cfg, DTLSPLEX_LOG_ERROR, "out of memory: event %d lost", event);
      return;
    }
    ep->events = events;
    ep->events_cap = cap;
  }
  ep->events[ep->events_len++] = (dp_event){.event = event, .error = error, .peer = *peer};
}

static void log_peer(const dp_endpoint *ep, int level, const dp_addr *addr, const char *what, int error) {
  if (ep->cfg->log_fn == NULL || level > ep->cfg->log_level)
    return;
  char name[64];
  dp_addr_format(addr, name, sizeof name);
  dp_log(ep->cfg, level, "%s: %s%s%s", name, what, error ? ": " : "", error ? strerror(error) : "");
}

dp_endpoint *dp_endpoint_new(dtlsplex_config *cfg, dp_send_fn send, void *send_arg) {
  dp_endpoint *ep = calloc(1, sizeof *ep);
  if (ep == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  ep->cfg = cfg;
  ep->send = send;
  ep->send_arg = send_arg;
  dp_table_init(&ep->peers);
  dp_source_limits limits = source_limits(cfg);
  dp_sources_init(&ep->sources, &limits, cfg->max_peers);
  dp_recv_queue_init(&ep->received, DP_RECV_QUEUE_MAX, cfg->mtu);
  ep->io = (dp_bio_io){.mtu = cfg->mtu, .rto_initial_ms = cfg->rto_initial_ms, .rto_max_ms = cfg->rto_max_ms,
                       .send = counting_send, .send_arg = ep, .out = &ep->out,
                       .records_by_libssl = cfg->records_by_libssl};
  ep->queue_mtu = dp_suites_data_mtu(cfg->ctx, cfg->mtu);
  dp_cookie_init(&ep->cookies, cfg->cookie_secret, cfg->cookie_secret_len);
  ep->serves = (cfg->role & DTLSPLEX_ROLE_SERVER) && dp_config_can_serve(cfg);
  ep->both_roles = ep->serves && (cfg->role & DTLSPLEX_ROLE_CLIENT);
  if (ep->serves &&
      dp_listener_init(&ep->listener, cfg->ctx, &ep->cookies, &ep->io) != 0) {
    dp_cookie_cleanup(&ep->cookies);
    free(ep);
    errno = ENOMEM;
    return NULL;
  }
  return ep;
}

int dp_endpoint_reconfigure(dp_endpoint *ep, dtlsplex_config *cfg) {
  int serves = (cfg->role & DTLSPLEX_ROLE_SERVER) && dp_config_can_serve(cfg);
  if (ep->serves)
    dp_listener_cleanup(&ep->listener);
  ep->io.mtu = cfg->mtu;
  ep->io.rto_initial_ms = cfg->rto_initial_ms;
  ep->io.rto_max_ms = cfg->rto_max_ms;
  if (serves && dp_listener_init(&ep->listener, cfg->ctx, &ep->cookies, &ep->io) != 0) {
    ep->io.mtu = ep->cfg->mtu;
    ep->io.rto_initial_ms = ep->cfg->rto_initial_ms;
    ep->io.rto_max_ms = ep->cfg->rto_max_ms;
    if (ep->serves && dp_listener_init(&ep->listener, ep->cfg->ctx, &ep->cookies, &ep->io) != 0)
      ep->serves = ep->both_roles = 0; /* out of memory twice: it accepts nothing more */
    return -ENOMEM;
  }
  /* The cookie keys stay: cookies sent just before still verify. */
  ep->cfg = cfg;
  dp_source_limits limits = source_limits(cfg);
  dp_sources_set_limits(&ep->sources, &limits, cfg->max_peers);
  ep->queue_mtu = dp_suites_data_mtu(cfg->ctx, cfg->mtu);
  ep->serves = serves;
  int both_roles = serves && (cfg->role & DTLSPLEX_ROLE_CLIENT);
  /* Sessions accepted while the endpoint only served were the program's
   * to answer: with both roles from now on, they stay so. */
  for (dp_table_entry *e = both_roles && !ep->both_roles ? dp_table_first(&ep->peers) : NULL; e != NULL;
       e = dp_table_next(e))
    peer_of(e)->known_to_program = 1;
  ep->both_roles = both_roles;
  return 0;
}

static void drop_replacement(dp_endpoint *ep, dp_peer *p) {
  dp_session_free(p->replacement);
  p->replacement = NULL;
  ep->handshakes--;
}

static void end_sessions(dp_endpoint *ep, dp_peer *p) {
  if (p->replacement != NULL)
    drop_replacement(ep, p);
  if (p->session != NULL) {
    ep->sessions--;
    if (p->handshake_deadline != 0)
      ep->handshakes--;
    dp_session_free(p->session);
    p->session = NULL;
  }
  p->handshake_deadline = 0;
  account(ep, p);
}

/* Forgets a peer entirely. */
static void remove_peer(dp_endpoint *ep, dp_peer *p) {
  end_sessions(ep, p);
  dp_table_remove(&ep->peers, &p->entry);
  free(p->server_name);
  free(p);
}

/* Ends a peer's sessions.  A peer named with dtlsplex_set_peer_name keeps its
 * name, so that every later handshake towards it checks the name too; one
 * this side was the client of stays client_only while the table has room
 * (set_peer_name's bound), so that no handshake from it is accepted later. */
static void forget_peer(dp_endpoint *ep, dp_peer *p) {
  int keep_mark = p->client_only && ep->both_roles &&
                  dp_table_count(&ep->peers) < 2 * (size_t)ep->cfg->max_peers;
  if (p->server_name == NULL && !keep_mark) {
    remove_peer(ep, p);
    return;
  }
  end_sessions(ep, p);
  p->known_to_program = 0;
  p->failed_error = 0;
  dp_table_set_deadline(&ep->peers, &p->entry, DP_NO_DEADLINE); /* cannot fail */
}

void dp_endpoint_free(dp_endpoint *ep) {
  if (ep == NULL)
    return;
  dp_table_entry *e;
  while ((e = dp_table_first(&ep->peers)) != NULL) {
    dp_peer *p = peer_of(e);
    if (p->session != NULL)
      dp_session_shutdown(p->session);
    remove_peer(ep, p);
  }
  dp_table_clear(&ep->peers);
  dp_sources_clear(&ep->sources);
  dp_recv_queue_clear(&ep->received);
  dp_listener_cleanup(&ep->listener);
  dp_cookie_cleanup(&ep->cookies);
  OPENSSL_cleanse(ep->scratch, sizeof ep->scratch);
  free(ep->events);
  free(ep);
}

static dp_peer *new_peer(dp_endpoint *ep, const dp_addr *addr) {
  dp_peer *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->addr = *addr;
  p->entry.key = addr->key;
  if (dp_table_add(&ep->peers, &p->entry) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

/* When an established peer's buffers are next due for release: silence since
 * its last activity, and not again right after a release libssl refused. */
static uint64_t release_due(const dp_peer *p) {
  uint64_t since = p->last_activity > p->release_tried ? p->last_activity : p->release_tried;
  return since + RELEASE_BUFFERS_AFTER_MS;
}

/* The peer's earliest deadline. */
static uint64_t next_deadline(const dp_endpoint *ep, const dp_peer *p) {
  uint64_t deadline = DP_NO_DEADLINE;
  const dp_session *s = p->session;
  if (s == NULL) {
    if (p->failed_error != 0)
      deadline = p->forget_at;
  } else if (s->state == DP_SESSION_HANDSHAKING) {
    deadline = p->handshake_deadline < s->retransmit_at ? p->handshake_deadline : s->retransmit_at;
  } else if (s->state == DP_SESSION_ESTABLISHED) {
    if (ep->cfg->idle_ms != 0)
      deadline = p->last_activity + ep->cfg->idle_ms;
    if (dp_session_holds_buffers(s) && release_due(p) < deadline)
      deadline = release_due(p);
  } else {
    deadline = 0; /* failed or closed: expire() removes it at once */
  }
  if (p->replacement != NULL) {
    uint64_t r = p->replacement_deadline < p->replacement->retransmit_at ? p->replacement_deadline
                                                                           : p->replacement->retransmit_at;
    deadline = r < deadline ? r : deadline;
  }
  return deadline;
}

/* Puts the peer in the timer order at its earliest deadline. */
static void schedule(dp_endpoint *ep, dp_peer *p) {
  account(ep, p);
  if (dp_table_set_deadline(&ep->peers, &p->entry, next_deadline(ep, p)) != 0) {
    /* Out of memory for the timer order: the peer keeps its old deadline
     * (callers go on using it, so it cannot be freed here). */
    log_peer(ep, DTLSPLEX_LOG_ERROR, &p->addr, "out of memory: peer timer not moved", ENOMEM);
  }
}

/* Gives a peer a session that has just been created. */
static void attach_session(dp_endpoint *ep, dp_peer *p, dp_session *s, uint64_t now) {
  p->session = s;
  p->failed_error = 0;
  p->handshake_deadline = now + ep->cfg->handshake_ms;
  p->last_activity = p->last_heard = now;
  ep->sessions++;
  ep->handshakes++;
  account(ep, p);
}

/* A session's handshake or life ended badly.  A client keeps the error for
 * the next dtlssendto to that peer to report. */
static void session_failed(dp_endpoint *ep, dp_peer *p, uint64_t now) {
  int err = p->session->error;
  if (p->handshake_deadline != 0) {
    ep->handshakes--;
    ep->stats.handshakes_failed++;
    p->handshake_deadline = 0;
    ep->stats.psk_unknown += !p->session->is_client && dp_config_psk_unknown(p->session->ssl);
  }
  log_peer(ep, DTLSPLEX_LOG_WARNING, &p->addr, "session failed", err);
  emit(ep, DTLSPLEX_EVENT_FAILED, &p->addr, err);
  if (p->session->is_client) /* the next handshake starts afresh */
    dp_resume_cache_remove(dp_config_of(p->session->ssl)->resume_cache, &p->addr.key, p->server_name);
  if (!p->session->is_client) {
    forget_peer(ep, p);
    return;
  }
  ep->sessions--;
  dp_session_free(p->session);
  p->session = NULL;
  p->failed_error = err;
  p->forget_at = now + ep->cfg->handshake_ms;
  schedule(ep, p);
}

/* A handshake completed: counted, and a client keeps the session to offer
 * that server next time, in the cache of the configuration it was checked
 * with. */
static void handshake_done(dp_endpoint *ep, const dp_peer *p, dp_session *s) {
  ep->handshakes--;
  ep->stats.handshakes_ok++;
  ep->stats.handshakes_resumed += SSL_session_reused(s->ssl) == 1;
  const dtlsplex_config *made_with = dp_config_of(s->ssl);
  if (s->is_client && made_with->resumption) {
    SSL_SESSION *kept = SSL_get1_session(s->ssl);
    dp_resume_cache_put(made_with->resume_cache, &p->addr.key, p->server_name, kept);
    SSL_SESSION_free(kept);
  }
}

/* Applies what a datagram or timer did to a session. */
static void apply_flags(dp_endpoint *ep, dp_peer *p, int flags, uint64_t now) {
  dp_session *s = p->session;
  if (flags & DP_IN_ESTABLISHED) {
    handshake_done(ep, p, s);
    p->handshake_deadline = 0;
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "connected", 0);
    emit(ep, DTLSPLEX_EVENT_CONNECTED, &p->addr, 0);
    unsigned int queued = s->queue.len, unsent = dp_session_queue_flush(s);
    ep->stats.app_datagrams_out += queued - unsent;
    if (unsent != 0)
      log_peer(ep, DTLSPLEX_LOG_WARNING, &p->addr, "queued datagrams could not be sent", EMSGSIZE);
    if (s->state == DP_SESSION_FAILED) /* a write broke the session */
      flags |= DP_IN_FAILED;
  }
  if (flags & DP_IN_FAILED) {
    session_failed(ep, p, now);
    return;
  }
  if (flags & DP_IN_CLOSED) {
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "closed by peer", 0);
    emit(ep, DTLSPLEX_EVENT_CLOSED, &p->addr, 0);
    forget_peer(ep, p);
    return;
  }
  /* Data only moves an established session's deadlines later: the timer
   * already set fires early, and expire() sets the new one.  This spares
   * the timer order an update per datagram. */
  if (flags == DP_IN_DATA && p->entry.deadline <= next_deadline(ep, p))
    return;
  schedule(ep, p);
}

static void deliver(void *arg, const uint8_t *data, size_t len) {
  dp_endpoint *ep = arg;
  int r = dp_recv_queue_push(&ep->received, ep->delivering_from, ep->arrived_at, data, len);
  if (r == 0)
    ep->stats.app_datagrams_in++;
  else if (r == -ENOMEM)
    ep->lost_for_memory = 1;
  else
    ep->stats.dropped_queue_full++;
}


/* Applies what a datagram or timer did to a reconnecting client's new
 * handshake: once it completes, it replaces the old session. */
static void apply_replacement_flags(dp_endpoint *ep, dp_peer *p, int flags, uint64_t now) {
  if (flags & DP_IN_ESTABLISHED) {
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "reconnected, old session replaced", 0);
    emit(ep, DTLSPLEX_EVENT_REPLACED, &p->addr, 0);
    emit(ep, DTLSPLEX_EVENT_CONNECTED, &p->addr, 0);
    handshake_done(ep, p, p->replacement);
    dp_session_free(p->session); /* no close_notify: that client is gone */
    p->session = p->replacement;
    p->replacement = NULL;
    account(ep, p);
    active(ep, p, now);
    /* The same datagram may have closed or broken the new session. */
    apply_flags(ep, p, flags & ~DP_IN_ESTABLISHED, now);
    return;
  } else if (flags & (DP_IN_FAILED | DP_IN_CLOSED)) {
    ep->stats.handshakes_failed++;
    drop_replacement(ep, p);
  }
  schedule(ep, p);
}

#define ADMIT_REFUSED 0
#define ADMIT_CHARGED 1   /* a full handshake, taken from the budget */
#define ADMIT_IF_RESUMED 2 /* offers a ticket: charged after all if libssl does not resume */

/* Whether a client whose cookie checked (its address is real) may start a
 * handshake now: within its source's share and its budget of full
 * handshakes.  A resumption costs no public-key work and nothing from the
 * budget: a ClientHello offering a ticket is let through while the budget
 * lasts and charged once libssl has chosen a full handshake instead (see
 * charge_if_full); with the budget spent, only if its ticket is one this
 * server sealed, which costs an HMAC.  Counts a refusal. */
static int admit(dp_endpoint *ep, dp_source *src, const dp_addr *from, const uint8_t *data, size_t len,
                 int new_session, uint64_t now) {
  if (src == NULL) {
    log_peer(ep, DTLSPLEX_LOG_ERROR, from, "out of memory, handshake dropped", ENOMEM);
    return ADMIT_REFUSED;
  }
  if (!dp_sources_may_open(&ep->sources, src, new_session)) {
    ep->stats.dropped_source_share++;
    return ADMIT_REFUSED;
  }
  const uint8_t *ticket;
  size_t ticket_len;
  if (!ep->cfg->resumption || !dp_client_hello_ticket(data, len, &ticket, &ticket_len)) {
    if (dp_sources_take_handshake(&ep->sources, src, now))
      return ADMIT_CHARGED;
  } else if (dp_sources_budget_left(&ep->sources, src, now) ||
             dp_ticket_authentic(&ep->cfg->tickets, ticket, ticket_len, now)) {
    return ADMIT_IF_RESUMED;
  }
  ep->stats.dropped_handshake_budget++;
  return ADMIT_REFUSED;
}

/* After the server's first flight: a ticket that did not resume was a full
 * handshake after all.  The budget may go into debt for it. */
static void charge_if_full(dp_endpoint *ep, const dp_peer *p, const dp_session *s, int admitted, uint64_t now) {
  if (admitted == ADMIT_IF_RESUMED && p->source != NULL && SSL_session_reused(s->ssl) != 1)
    dp_sources_charge_handshake(&ep->sources, p->source, now);
}

/* With the table full: the least recently active established peer this side
 * accepted, if it has been silent (both ways) for the configured minimum. */
static dp_peer *eviction_candidate(const dp_endpoint *ep, uint64_t now) {
  dp_peer *p = ep->lru;
  uint64_t min_silence = ep->cfg->evict_after_ms;
  return p != NULL && min_silence != 0 && p->replacement == NULL && p->last_activity <= now &&
                 now - p->last_activity >= min_silence
             ? p
             : NULL;
}

static void evict(dp_endpoint *ep, dp_peer *p) {
  ep->stats.evicted++;
  log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "silent, evicted to admit a new client", 0);
  emit(ep, DTLSPLEX_EVENT_EXPIRED, &p->addr, ENOBUFS);
  dp_session_shutdown(p->session); /* close_notify: the client knows to reconnect */
  forget_peer(ep, p);
}

/* A ClientHello from the address of an established server session: the
 * client restarted (RFC 6347 section 4.2.8), or this is a replay or a late
 * duplicate.  A new handshake runs beside the old session, which goes only
 * when that handshake completes, so a replayed ClientHello (even with a
 * still-valid cookie) cannot break the session. */
static void reconnect(dp_endpoint *ep, dp_peer *p, const uint8_t *data, size_t len, uint64_t now) {
  unsigned char current_random[32];
  const uint8_t *random = dp_client_hello_random(data, len);
  if (random == NULL ||
      (SSL_get_client_random(p->session->ssl, current_random, sizeof current_random) == 32 &&
       memcmp(random, current_random, 32) == 0)) {
    ep->stats.dropped_bad_record++;
    return;
  }
  if (ep->handshakes >= ep->cfg->max_handshakes) {
    ep->stats.dropped_limit++;
    return;
  }
  int cookie_sent;
  SSL *ssl = dp_listener_input(&ep->listener, &p->addr, ep->arrived_at, data, len, now, &cookie_sent);
  ep->stats.cookies_sent += cookie_sent;
  if (ssl == NULL) {
    ep->stats.dropped_bad_cookie += !cookie_sent;
    return;
  }
  if (p->source == NULL) { /* out of memory when it was accepted */
    p->source = dp_sources_get(&ep->sources, &p->addr.key, now);
    account(ep, p);
  }
  int admitted = admit(ep, p->source, &p->addr, data, len, 0, now);
  dp_session *s = admitted != ADMIT_REFUSED ? dp_session_adopt(ssl, &p->addr, ep->arrived_at, &ep->io) : NULL;
  if (s == NULL) {
    SSL_free(ssl);
    return; /* refused, or out of memory: the old session stays */
  }
  p->replacement = s;
  p->replacement_deadline = now + ep->cfg->handshake_ms;
  p->replacement_answered = 0;
  ep->handshakes++;
  int flags = dp_session_start(s, now);
  charge_if_full(ep, p, s, admitted, now);
  apply_replacement_flags(ep, p, flags, now);
}

/* A datagram from an address without a session: only a ClientHello with a
 * verified cookie creates state. */
static void accept_client(dp_endpoint *ep, const dp_addr *from, const uint8_t *data, size_t len,
                          uint64_t now) {
  if (!ep->serves || !dp_is_client_hello(data, len)) {
    ep->stats.dropped_no_session++;
    return;
  }
  dp_peer *known = find_peer(ep, from);
  if (known != NULL && known->client_only) {
    ep->stats.refused_inbound++;
    return;
  }
  /* A full table takes a client only in a silent peer's place. */
  int full = ep->sessions >= ep->cfg->max_peers;
  if ((full && eviction_candidate(ep, now) == NULL) || ep->handshakes >= ep->cfg->max_handshakes) {
    ep->stats.dropped_limit++;
    return;
  }
  int cookie_sent;
  SSL *ssl = dp_listener_input(&ep->listener, from, ep->arrived_at, data, len, now, &cookie_sent);
  ep->stats.cookies_sent += cookie_sent;
  if (ssl == NULL) {
    ep->stats.dropped_bad_cookie += !cookie_sent;
    return;
  }
  dp_source *src = dp_sources_get(&ep->sources, &from->key, now);
  int admitted = admit(ep, src, from, data, len, 1, now);
  if (admitted == ADMIT_REFUSED) {
    SSL_free(ssl);
    return;
  }
  /* The session answers from the address its ClientHello reached, all its
   * life: a client that sent to that address hears only from it. */
  dp_peer *p = known != NULL ? known : new_peer(ep, from);
  dp_session *s = p != NULL ? dp_session_adopt(ssl, from, ep->arrived_at, &ep->io) : NULL;
  if (s == NULL) {
    if (p == NULL)
      SSL_free(ssl);
    else if (p->server_name == NULL)
      remove_peer(ep, p);
    log_peer(ep, DTLSPLEX_LOG_ERROR, from, "out of memory, handshake dropped", ENOMEM);
    return;
  }
  p->source = src;
  attach_session(ep, p, s, now); /* counts against src, which stays while it holds the session */
  dp_peer *victim = full ? eviction_candidate(ep, now) : NULL;
  if (victim != NULL)
    evict(ep, victim);
  int flags = dp_session_start(s, now);
  charge_if_full(ep, p, s, admitted, now);
  apply_flags(ep, p, flags, now);
}

static void feed_replacement(dp_endpoint *ep, dp_peer *p, const uint8_t *data, size_t len, uint64_t now) {
  if (!dp_is_client_hello(data, len))
    p->replacement_answered = 1;
  ep->delivering_from = &p->addr;
  int flags = dp_session_input(p->replacement, data, len, now, ep->scratch, sizeof ep->scratch, deliver, ep);
  ep->delivering_from = NULL;
  apply_replacement_flags(ep, p, flags, now);
}

static const dp_local unknown_local;

void dp_endpoint_read_pkt(dp_endpoint *ep, const dp_addr *from, const dp_local *local, const uint8_t *data,
                          size_t len, uint64_t now) {
  ep->arrived_at = local != NULL ? local : &unknown_local;
  ep->now = now;
  ep->stats.datagrams_in++;
  ep->stats.bytes_in += len;
  if (len < DTLS_RECORD_HEADER_LEN) {
    /* Holds no record.  An empty datagram would even read as end-of-file
     * to libssl and break the session: anyone can send one. */
    ep->stats.dropped_bad_record++;
    return;
  }
  dp_peer *p = find_peer(ep, from);
  if (p == NULL || p->session == NULL) {
    accept_client(ep, from, data, len, now);
    return;
  }
  dp_session *s = p->session;
  int epoch0 = len >= 13 && data[3] == 0 && data[4] == 0;
  if (p->replacement != NULL && epoch0) {
    feed_replacement(ep, p, data, len, now);
    return;
  }
  if (ep->serves && s->state == DP_SESSION_ESTABLISHED && !s->is_client && dp_is_client_hello(data, len)) {
    reconnect(ep, p, data, len, now);
    return;
  }
  ep->delivering_from = &p->addr;
  int flags = dp_session_input(s, data, len, now, ep->scratch, sizeof ep->scratch, deliver, ep);
  ep->delivering_from = NULL;
  if (flags & DP_IN_LOST) {
    ep->lost_for_memory = 1;
    apply_flags(ep, p, flags & ~DP_IN_LOST, now);
    return;
  }
  if (flags != 0) {
    active(ep, p, now);
    p->last_heard = now;
  }
  /* A client session left its source address to the kernel: the server's
   * Finished, authenticated, shows which address that was (see
   * source_conflicts).  The choice stays the kernel's (and an interface the
   * program chose stays chosen), which costs no control message. */
  if ((flags & DP_IN_ESTABLISHED) && !dp_local_address_known(&s->io.local) && ep->arrived_at->family != 0) {
    dp_local learnt = *ep->arrived_at;
    learnt.has_source = s->io.local.has_source;
    learnt.source_ifindex = s->io.local.source_ifindex;
    s->io.local = learnt;
  }
  if (flags == 0 && p->replacement != NULL) {
    /* Not the old session's: the reconnecting client's encrypted Finished. */
    apply_flags(ep, p, 0, now);
    feed_replacement(ep, p, data, len, now);
    return;
  }
  if (flags == 0 && s->state == DP_SESSION_ESTABLISHED)
    ep->stats.dropped_bad_record++;
  apply_flags(ep, p, flags, now);
}

/* Starts a client handshake towards addr from source, reusing a name-only entry. */
static ssize_t connect_peer(dp_endpoint *ep, dp_peer *p, const dp_addr *to, const dp_local *source,
                            uint64_t now) {
  if (!(ep->cfg->role & DTLSPLEX_ROLE_CLIENT))
    return -ENOTCONN;
  if (ep->sessions >= ep->cfg->max_peers || ep->handshakes >= ep->cfg->max_handshakes)
    return -EAGAIN;
  int fresh = p == NULL;
  if (fresh && (p = new_peer(ep, to)) == NULL)
    return -ENOMEM;
  dp_session *s = dp_session_new_client(ep->cfg->ctx, &p->addr, source, p->server_name, ep->cfg->verify,
                                        ep->cfg->chain_only, &ep->io);
  if (s == NULL) {
    if (fresh)
      remove_peer(ep, p);
    return -ENOMEM;
  }
  p->client_only = 1;
  if (ep->cfg->resumption) { /* the last session with this server, if any */
    SSL_SESSION *last = dp_resume_cache_get(ep->cfg->resume_cache, &p->addr.key, p->server_name);
    if (last != NULL)
      SSL_set_session(s->ssl, last);
    SSL_SESSION_free(last);
  }
  attach_session(ep, p, s, now);
  int flags = dp_session_start(s, now);
  /* The ClientHello could not leave at all (no route, a destination the
   * kernel refuses): fail now with the kernel's errno, as sendto(2) would,
   * rather than retransmit into it until the handshake times out.  A full
   * buffer is only a loss. */
  int send_err = -s->io.last_send_error;
  if (send_err != 0 && send_err != EAGAIN && send_err != EWOULDBLOCK && send_err != ENOBUFS &&
      s->state == DP_SESSION_HANDSHAKING) {
    s->state = DP_SESSION_FAILED;
    s->error = send_err;
    flags |= DP_IN_FAILED;
  }
  apply_flags(ep, p, flags, now);
  return 0;
}

/* A source the program asks for that is not the session's address: the
 * peer knows the session by the address pair, and a record from elsewhere
 * would reach it as a stranger's and be dropped. */
static int source_conflicts(const dp_session *s, const dp_local *source) {
  return source != NULL && dp_local_address_known(source) && dp_local_address_known(&s->io.local) &&
         memcmp(&source->source, &s->io.local.source, sizeof source->source) != 0;
}

/* A client session whose server has been silent for resume_after: the
 * server may have lost it (a restart, a failover, a NAT binding gone), and
 * records over it would be dropped unseen.  An abbreviated handshake costs
 * a round trip and proves the server still there. */
static int resume_first(const dp_endpoint *ep, const dp_peer *p, uint64_t now) {
  return p != NULL && p->session != NULL && p->session->is_client && p->session->state == DP_SESSION_ESTABLISHED &&
         ep->cfg->resume_after_ms != 0 && now - p->last_heard >= ep->cfg->resume_after_ms;
}

/* With both roles, a dtlssendto to an address whose session this side
 * accepted, before the program heard of that session, means the program
 * speaks first: it is that address's client, and the server there must
 * prove itself.  The accepted session may be anyone's who can send from the
 * address (issue 18), so it goes, and this side's own handshake starts. */
static int speaks_first_to_inbound(const dp_endpoint *ep, const dp_peer *p) {
  return ep->both_roles && p != NULL && p->session != NULL && !p->session->is_client &&
         !p->known_to_program && p->failed_error == 0;
}

ssize_t dp_endpoint_write_pkt(dp_endpoint *ep, const dp_addr *to, const dp_local *source, const void *buf,
                              size_t len, int queue_if_handshaking, uint64_t now) {
  ep->now = now;
  dp_peer *p = find_peer(ep, to);
  if (speaks_first_to_inbound(ep, p)) {
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "the program sends first: session it accepted dropped, connecting as client", 0);
    ep->stats.refused_inbound++;
    dp_session_shutdown(p->session);
    end_sessions(ep, p);
  }
  if (resume_first(ep, p, now)) {
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "silent too long: resuming before sending", 0);
    dp_session_shutdown(p->session);
    end_sessions(ep, p);
  }
  if (p == NULL || (p->session == NULL && p->failed_error == 0)) {
    ssize_t r = connect_peer(ep, p, to, source != NULL ? source : &unknown_local, now);
    if (r != 0)
      return r;
    if ((p = find_peer(ep, to)) == NULL)
      return -ENOMEM; /* dropped by schedule() */
  }
  if (p->session == NULL) { /* the handshake failed: report it once */
    int err = p->failed_error;
    forget_peer(ep, p);
    return -err;
  }
  dp_session *s = p->session;
  if (source_conflicts(s, source))
    return -EINVAL;
  if (s->state == DP_SESSION_HANDSHAKING) {
    if (!queue_if_handshaking)
      return -EINPROGRESS;
    int r = dp_session_queue_push(s, buf, len, ep->queue_mtu);
    return r != 0 ? r : (ssize_t)len;
  }
  /* The program's choice (an interface, say) holds for its datagram, as
   * IP_PKTINFO does for one sendmsg; the session's own datagrams keep theirs.
   * An unspecified address keeps the session's: only it reaches the peer. */
  dp_local session_local;
  if (source != NULL) {
    session_local = s->io.local;
    s->io.local = *source;
    if (!dp_local_address_known(source) && dp_local_address_known(&session_local)) {
      s->io.local.family = session_local.family;
      s->io.local.source = session_local.source;
    }
  }
  ssize_t n = dp_session_write(s, buf, len);
  if (source != NULL)
    s->io.local = session_local;
  if (n >= 0) {
    ep->stats.app_datagrams_out++;
    active(ep, p, now);
  } else if (s->state == DP_SESSION_FAILED) {
    session_failed(ep, p, now);
  }
  return n;
}

uint64_t dp_endpoint_get_expiry(const dp_endpoint *ep) { return dp_table_earliest_deadline(&ep->peers); }

uint64_t dp_endpoint_settle_expiry(dp_endpoint *ep) {
  /* Bounded: each pass moves one entry to its real, later deadline. */
  for (int pass = 0; pass < 8; pass++) {
    dp_table_entry *e = dp_table_earliest(&ep->peers);
    if (e == NULL || next_deadline(ep, peer_of(e)) <= e->deadline)
      break;
    schedule(ep, peer_of(e));
  }
  return dp_table_earliest_deadline(&ep->peers);
}

/* A handshake under way fails with err. */
static void end_handshake(dp_endpoint *ep, dp_peer *p, int err, uint64_t now) {
  p->session->state = DP_SESSION_FAILED;
  p->session->error = err;
  apply_flags(ep, p, DP_IN_FAILED, now);
}

static void expire_replacement(dp_endpoint *ep, dp_peer *p, uint64_t now) {
  if (now >= p->replacement_deadline) {
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "reconnection handshake timed out, old session kept", 0);
    apply_replacement_flags(ep, p, DP_IN_FAILED, now);
  } else if (now >= p->replacement->retransmit_at && !p->replacement_answered) {
    ep->stats.replacements_unanswered++;
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "reconnection unanswered (a replayed ClientHello?), old session kept", 0);
    apply_replacement_flags(ep, p, DP_IN_FAILED, now);
  } else if (now >= p->replacement->retransmit_at) {
    apply_replacement_flags(ep, p, dp_session_on_timer(p->replacement, now), now);
  }
}

static void expire(dp_endpoint *ep, dp_peer *p, uint64_t now) {
  if (p->replacement != NULL)
    expire_replacement(ep, p, now);
  dp_session *s = p->session;
  if (s == NULL) { /* a failed handshake nobody asked about */
    forget_peer(ep, p);
    return;
  }
  if (s->state == DP_SESSION_HANDSHAKING) {
    if (now >= p->handshake_deadline) {
      end_handshake(ep, p, ETIMEDOUT, now);
      return;
    }
    if (now >= s->retransmit_at) {
      apply_flags(ep, p, dp_session_on_timer(s, now), now);
      return;
    }
  } else if (s->state == DP_SESSION_ESTABLISHED && ep->cfg->idle_ms != 0 &&
             now >= p->last_activity + ep->cfg->idle_ms) {
    ep->stats.expired++;
    log_peer(ep, DTLSPLEX_LOG_INFO, &p->addr, "idle, expired", 0);
    emit(ep, DTLSPLEX_EVENT_EXPIRED, &p->addr, 0);
    dp_session_shutdown(s);
    forget_peer(ep, p);
    return;
  } else if (s->state == DP_SESSION_ESTABLISHED && dp_session_holds_buffers(s) && now >= release_due(p)) {
    p->release_tried = now;
    if (dp_session_release_buffers(s))
      ep->released_since_trim++;
  } else if (s->state == DP_SESSION_FAILED || s->state == DP_SESSION_CLOSED) {
    apply_flags(ep, p, s->state == DP_SESSION_FAILED ? DP_IN_FAILED : DP_IN_CLOSED, now);
    return;
  }
  schedule(ep, p); /* or activity moved the deadline on */
}

int dp_endpoint_handshaking(const dp_endpoint *ep) { return ep->handshakes > 0; }

void dp_endpoint_handle_expiry(dp_endpoint *ep, uint64_t now) {
  ep->now = now;
  /* Bounded: each pass removes the peer or moves its deadline past now,
   * except a retransmission libssl declines (its clock behind ours), which
   * moves the deadline to libssl's. */
  for (size_t budget = dp_table_count(&ep->peers) + 1; budget > 0; budget--) {
    if (dp_table_earliest_deadline(&ep->peers) > now)
      break;
    expire(ep, peer_of(dp_table_earliest(&ep->peers)), now);
  }
#ifdef __GLIBC__
  /* Released buffers lie between live sessions in the heap, where glibc
   * keeps their pages: give whole free pages back to the system once enough
   * have been released to be worth a pass over the heap. */
  if (ep->released_since_trim >= TRIM_AFTER_RELEASES) {
    malloc_trim(0);
    ep->released_since_trim = 0;
  }
#endif
}

/* The program has heard of the peer's session (see known_to_program). */
static void heard_of(dp_endpoint *ep, const dp_addr *addr) {
  dp_peer *p = find_peer(ep, addr);
  if (p != NULL && p->session != NULL)
    p->known_to_program = 1;
}

ssize_t dp_endpoint_recvmsg(dp_endpoint *ep, const struct iovec *iov, size_t iovcnt, int peek, dp_addr *from,
                            dp_local *local) {
  dp_addr sender;
  ssize_t n = dp_recv_queue_pop(&ep->received, iov, iovcnt, peek, from != NULL ? from : &sender, local);
  if (n == -EAGAIN && ep->lost_for_memory) {
    ep->lost_for_memory = 0;
    return -ENOMEM;
  }
  if (n >= 0 && ep->both_roles)
    heard_of(ep, from != NULL ? from : &sender);
  return n;
}

size_t dp_endpoint_pending(const dp_endpoint *ep) { return ep->received.len; }

int dp_endpoint_has_events(const dp_endpoint *ep) { return ep->events_len > 0; }

int dp_endpoint_next_event(dp_endpoint *ep, dp_event *out) {
  if (ep->events_len == 0)
    return 0;
  *out = ep->events[0];
  memmove(ep->events, ep->events + 1, --ep->events_len * sizeof *ep->events);
  if (out->event == DTLSPLEX_EVENT_CONNECTED && ep->both_roles)
    heard_of(ep, &out->peer);
  return 1;
}

int dp_endpoint_fail_handshake(dp_endpoint *ep, const dp_addr *peer, int err, uint64_t now) {
  ep->now = now;
  dp_peer *p = find_peer(ep, peer);
  if (p == NULL || p->session == NULL || !p->session->is_client || p->session->state != DP_SESSION_HANDSHAKING)
    return 0;
  end_handshake(ep, p, err, now);
  return 1;
}

int dp_endpoint_take_failure(dp_endpoint *ep, const dp_addr *peer) {
  dp_peer *p = find_peer(ep, peer);
  if (p == NULL || p->session != NULL || p->failed_error == 0)
    return 0;
  int err = p->failed_error;
  forget_peer(ep, p);
  return err;
}

int dp_endpoint_peer_state(dp_endpoint *ep, const dp_addr *peer, int *error) {
  const dp_peer *p = find_peer(ep, peer);
  *error = 0;
  if (p == NULL)
    return 0;
  if (p->session == NULL) {
    *error = p->failed_error;
    return p->failed_error != 0 ? DTLSPLEX_STATE_FAILED : 0;
  }
  *error = p->session->error;
  return p->session->state == DP_SESSION_CLOSED ? DTLSPLEX_STATE_FAILED : p->session->state;
}

int dp_endpoint_close(dp_endpoint *ep, const dp_addr *peer) {
  dp_peer *p = find_peer(ep, peer);
  if (p == NULL || (p->session == NULL && p->failed_error == 0)) /* unknown, or only named */
    return -ENOENT;
  if (p->session != NULL) {
    dp_session_shutdown(p->session);
    emit(ep, DTLSPLEX_EVENT_CLOSED, &p->addr, 0);
  }
  forget_peer(ep, p);
  return 0;
}

int dp_endpoint_set_peer_name(dp_endpoint *ep, const dp_addr *peer, const char *name) {
  dp_peer *p = find_peer(ep, peer);
  if (p != NULL && p->session != NULL)
    return -EISCONN;
  char *copy = strdup(name);
  if (copy == NULL)
    return -ENOMEM;
  if (p == NULL) {
    if (dp_table_count(&ep->peers) >= 2 * (size_t)ep->cfg->max_peers) {
      free(copy);
      return -EAGAIN;
    }
    if ((p = new_peer(ep, peer)) == NULL) {
      free(copy);
      return -ENOMEM;
    }
  }
  free(p->server_name);
  p->server_name = copy;
  p->client_only = 1;
  p->failed_error = 0; /* a new name, a new attempt */
  dp_table_set_deadline(&ep->peers, &p->entry, DP_NO_DEADLINE);
  return 0;
}

int dp_endpoint_peer_info(dp_endpoint *ep, const dp_addr *peer, struct dtlsplex_peer_info *out) {
  const dp_peer *p = find_peer(ep, peer);
  if (p == NULL || (p->session == NULL && p->failed_error == 0))
    return -ENOENT;
  if (p->session != NULL) {
    dp_session_info(p->session, out);
    return 0;
  }
  memset(out, 0, sizeof *out);
  out->state = DTLSPLEX_STATE_FAILED;
  out->is_client = 1;
  out->error = p->failed_error;
  return 0;
}

void dp_endpoint_stats(const dp_endpoint *ep, struct dtlsplex_stats *out) {
  *out = ep->stats;
  out->peers = ep->sessions;
  out->sources = ep->sources.count;
  out->handshakes_active = ep->handshakes;
}
