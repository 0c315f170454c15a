/* master.h: the master process — listeners, workers, signals, reload coordination. */
#ifndef SP_MASTER_H
#define SP_MASTER_H

#include "sp.h"

struct sp_conf;

/* Serves until SIGTERM/SIGINT; returns the process exit status. */
int sp_master_run(const struct sp_conf *conf);

/* The control socket beside the pid file ("var/spacer.pid" -> "var/spacer.sock"). */
void sp_master_ctl_path(const struct sp_conf *conf, char *buf, size_t cap);

/* Asks a running master to reload; writes its JSON answer to *out (caller frees).
 * Blocking: for the command line and for nothing on a loop. */
int sp_master_request_reload(const char *ctl_path, char **out, sp_err *err);

#endif
