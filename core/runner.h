/* runner.h: running Lua functions outside HTTP — `spacer test`, and the command-line tasks the
 * scripts provide (create-admin). A small worker of its own: loop, pool, hasher, generation. */
#ifndef SP_RUNNER_H
#define SP_RUNNER_H

#include <lua.h>

#include "sp.h"

struct sp_conf;
struct sp_runner;
struct sp_host;

int sp_runner_new(const struct sp_conf *conf, struct sp_runner **out, sp_err *err);
void sp_runner_free(struct sp_runner *r);
lua_State *sp_runner_state(struct sp_runner *r);
/* The host its calls run on (loop, pool, hasher, generation), for tests that make requests. */
struct sp_host *sp_runner_host(struct sp_runner *r);

/* Calls the function under nargs arguments on top of the runner's state in a coroutine with
 * the limits armed, running the loop until it ends. Returns 0 with the results on the stack
 * (as many as returned), or -1 with one error value (a traceback string for script errors). */
int sp_runner_call(struct sp_runner *r, int nargs, sp_err *err);

/* `spacer test [files...]`: prints each failure and "N passed, N failed"; 0 when all pass. */
int sp_runner_test(const struct sp_conf *conf, int nfiles, char **files);

/* Runs scripts/commands.lua's function name with a table of string options. Exit status. */
int sp_runner_command(const struct sp_conf *conf, const char *name, int nopts,
                      const char *const *keys, const char *const *values);

#endif
