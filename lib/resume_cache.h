/* The client side of resumption: the last session with each server, by
 * address and server name, offered on the next handshake with it (after a
 * close, an expiry, a failure or a restart of the socket).  One cache per
 * configuration: the CA and verify mode a session was checked with are the
 * configuration's, so a session is never offered across them, and a new
 * configuration (dtlsplex_reconfigure) starts empty. */
#ifndef DTLSPLEX_RESUME_CACHE_H
#define DTLSPLEX_RESUME_CACHE_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "addr.h"

typedef struct dp_resume_cache dp_resume_cache;

/* Servers a configuration keeps a session for, as many as a server's
 * table holds peers by default. */
#define DP_RESUME_CACHE_MAX 10000

/* At most max sessions (the oldest go).  NULL with errno ENOMEM. */
dp_resume_cache *dp_resume_cache_new(size_t max);
void dp_resume_cache_free(dp_resume_cache *c);
/* The session kept for (server, name) (name NULL: none), with a reference
 * for the caller, or NULL. */
SSL_SESSION *dp_resume_cache_get(dp_resume_cache *c, const dp_addr_key *server, const char *name);
/* Keeps sess for (server, name) if it can be resumed (takes its own
 * reference); out of memory, it is not kept. */
void dp_resume_cache_put(dp_resume_cache *c, const dp_addr_key *server, const char *name, SSL_SESSION *sess);
void dp_resume_cache_remove(dp_resume_cache *c, const dp_addr_key *server, const char *name);
/* Forgets every session (the configuration they were checked with changed). */
void dp_resume_cache_clear(dp_resume_cache *c);
size_t dp_resume_cache_count(dp_resume_cache *c);

#endif
