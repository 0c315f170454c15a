/* migrate.h: `spacer migrate` and `spacer seed` — blocking libpq, for the command line only. */
#ifndef SP_MIGRATE_H
#define SP_MIGRATE_H

#include <stdio.h>

#include "sp.h"

/* Applies the pending NNNN_name.sql files of dir in order, each in its own transaction with
 * its schema_migrations row, under an advisory lock (two runs at once are safe: each file is
 * applied once). Prints "applied NNNN_name" per file, or "migrations: nothing to apply".
 * status_only lists every file instead ("applied  NNNN_name  2026-01-31 10:00:00 UTC",
 * "pending  NNNN_name", "changed  ...") and changes nothing. An applied file whose
 * checksum changed stops either with an error naming it, before anything is applied.
 * Returns 0, or -1 with err set; out gets the progress lines. */
int sp_migrate(const char *conninfo, const char *dir, int status_only, FILE *out, sp_err *err);

/* Runs file in one transaction (the seed is written to be idempotent): all or nothing.
 * Returns 0, or -1 with err set ("sql/seed.sql:12: message"). */
int sp_seed(const char *conninfo, const char *file, FILE *out, sp_err *err);

#endif
