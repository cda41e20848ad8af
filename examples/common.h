/* Command-line handling shared by the two examples. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <dtlsplex.h>

/* Builds a configuration from the options after the positional arguments:
 *   --cert FILE --key FILE   certificate chain and key
 *   --ca FILE                trust anchors (instead of the system store)
 *   --name HOST              (client) name the server certificate must carry
 *   --insecure               (client) do not verify the server
 *   --psk IDENTITY:HEXKEY    pre-shared key
 * Exits with a message on a bad option.  *name is set for --name. */
dtlsplex_config *config_from_options(int argc, char **argv, const char **name);

/* Exits with "what: strerror(errno)". */
void die(const char *what);

#endif
