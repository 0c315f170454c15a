/* migrate.h: `spacer migrate` and `spacer seed` — blocking libpq, for the command line only. */
#ifndef SP_MIGRATE_H
#define SP_MIGRATE_H

#include <stdio.h>

#include "sp.h"

/* Applies the pending NNNN_name.sql files of dir in order, each in its own transaction,
 * under an advisory lock (two runs at once are safe). status_only lists them instead.
 * An applied file whose checksum changed stops the run with an error naming it. */
int sp_migrate(const char *conninfo, const char *dir, int status_only, FILE *out, sp_err *err);

/* Runs file in one transaction (the seed is written to be idempotent). */
int sp_seed(const char *conninfo, const char *file, FILE *out, sp_err *err);

#endif
