/* The --psk IDENTITY:HEXKEY argument every tool takes (dtlscat, dtlsproxy,
 * dtlsplex-run), read once for all of them. */
#ifndef DTLSPLEX_PSK_ARG_H
#define DTLSPLEX_PSK_ARG_H

#include "dtlsplex.h"

/* Adds the key arg describes to cfg: 0; -1 with *why saying what is wrong
 * with arg (a usage error); -2 if cfg refused it (errno set). */
int dp_psk_arg_apply(dtlsplex_config *cfg, const char *arg, const char **why);

#endif
