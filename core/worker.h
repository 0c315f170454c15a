/* worker.h: a worker process — its loop, HTTP connections, PostgreSQL pool, hasher and current
 * script generation. Requests live in req.h; the worker hosts them. */
#ifndef SP_WORKER_H
#define SP_WORKER_H

struct sp_conf;

/* Serves on listen_fd until told to stop; ctl_path is the master's control socket (for
 * spacer.ops.reload). Returns the process exit status. */
int sp_worker_run(const struct sp_conf *conf, int index, int listen_fd, int ctl_fd,
                  const char *ctl_path);

#endif
