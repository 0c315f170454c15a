/* migrate.c: schema migrations. Files sql/migrations/NNNN_name.sql are applied in order,
 * each in one transaction with its row in schema_migrations(version, name, checksum,
 * applied_at); the SHA-256 of an applied file must never change (fix forward). A session
 * advisory lock serialises concurrent runs. Blocking libpq: never used on an event loop. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define MIGRATE_LOCK 7391524601L /* pg_advisory_lock key of `spacer migrate` */

struct migration {
    int version;
    char name[200];
    char path[1024];
    char checksum[65];
    char *sql;
};

static int read_file(const char *path, char **out, sp_err *err)
{
    FILE *f = fopen(path, "rb");
    struct sp_buf b = {0};
    char chunk[8192];
    size_t n;

    if (f == NULL) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sp_buf_add(&b, chunk, n);
    fclose(f);
    if (b.data == NULL)
        sp_buf_add(&b, "", 0);
    *out = b.data;
    return 0;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;

    EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int cmp_migration(const void *a, const void *b)
{
    return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

/* On success *out (n entries, sorted) is the caller's, to free with free_list(). */
static int list_migrations(const char *dir, struct migration **out, int *n, sp_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct migration *list = NULL;
    int count = 0;

    if (d == NULL) {
        sp_err_set(err, "%s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        int version;
        char *end;
        if (len < 9 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        version = (int)strtol(e->d_name, &end, 10);
        if (end - e->d_name != 4 || *end != '_' || version <= 0) {
            sp_err_set(err, "%s/%s: migration files are named NNNN_name.sql", dir, e->d_name);
            closedir(d);
            free(list);
            return -1;
        }
        list = realloc(list, sizeof(*list) * (size_t)(count + 1));
        struct migration *m = &list[count++];
        memset(m, 0, sizeof(*m));
        m->version = version;
        snprintf(m->name, sizeof(m->name), "%.*s", (int)(len - 4), e->d_name);
        snprintf(m->path, sizeof(m->path), "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(list, (size_t)count, sizeof(*list), cmp_migration);
    for (int i = 1; i < count; i++)
        if (list[i].version == list[i - 1].version) {
            sp_err_set(err, "%s and %s share the version %04d", list[i - 1].path, list[i].path,
                       list[i].version);
            free(list);
            return -1;
        }
    *out = list;
    *n = count;
    return 0;
}

static void free_list(struct migration *list, int n)
{
    for (int i = 0; list && i < n; i++)
        free(list[i].sql);
    free(list);
}

/* Runs sql; 0 when the command succeeded. Multi-statement text is fine (simple protocol). */
static int exec(PGconn *pg, const char *sql, const char *what, sp_err *err)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
        if (pos != NULL) {
            /* Turn the character position into a line number of the file. */
            long at = strtol(pos, NULL, 10), line = 1;
            for (long i = 0; i < at - 1 && sql[i]; i++)
                line += sql[i] == '\n';
            sp_err_set(err, "%s:%ld: %s", what, line, msg ? msg : PQerrorMessage(pg));
        } else {
            sp_err_set(err, "%s: %s", what, msg ? msg : PQerrorMessage(pg));
        }
        rc = -1;
    }
    PQclear(res);
    return rc;
}

static PGconn *connect_db(const char *conninfo, sp_err *err)
{
    PGconn *pg = PQconnectdb(conninfo);

    if (PQstatus(pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(pg);
        sp_err_set(err, "cannot connect to the database: %.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pg);
        return NULL;
    }
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    return pg;
}

int sp_migrate(const char *conninfo, const char *dir, int status_only, FILE *out, sp_err *err)
{
    struct migration *list = NULL;
    int n = 0, rc = -1, applied = 0;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    char lock[128];

    if (list_migrations(dir, &list, &n, err) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (read_file(list[i].path, &list[i].sql, err) != 0)
            goto done;
        sha256_hex(list[i].sql, list[i].checksum);
    }
    if ((pg = connect_db(conninfo, err)) == NULL)
        goto done;
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_lock(%ld)", MIGRATE_LOCK);
    if (exec(pg, lock, "advisory lock", err) != 0 ||
        exec(pg,
             "CREATE TABLE IF NOT EXISTS schema_migrations ("
             " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
             " applied_at timestamptz NOT NULL DEFAULT now())",
             "schema_migrations", err) != 0)
        goto done;
    res = PQexec(pg, "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', "
                     "'YYYY-MM-DD HH24:MI:SS') FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sp_err_set(err, "schema_migrations: %s", PQerrorMessage(pg));
        goto done;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int version = atoi(PQgetvalue(res, r, 0)), found = 0;
        for (int i = 0; i < n; i++) {
            if (list[i].version != version)
                continue;
            found = 1;
            if (strcmp(list[i].checksum, PQgetvalue(res, r, 2)) != 0) {
                sp_err_set(err, "%s: checksum changed since it was applied (fix forward with a "
                                "new migration)", list[i].path);
                goto done;
            }
        }
        if (!found && !status_only)
            fprintf(out, "warning: applied migration %04d_%s has no file in %s\n", version,
                    PQgetvalue(res, r, 1), dir);
    }
    for (int i = 0; i < n; i++) {
        const char *when = NULL;
        for (int r = 0; r < PQntuples(res); r++)
            if (atoi(PQgetvalue(res, r, 0)) == list[i].version)
                when = PQgetvalue(res, r, 3);
        if (status_only) {
            fprintf(out, "%-8s %s%s%s\n", when ? "applied" : "pending", list[i].name,
                    when ? "  " : "", when ? when : "");
            continue;
        }
        if (when != NULL)
            continue;
        char version[16];
        const char *params[3] = {version, list[i].name + 5, list[i].checksum};
        snprintf(version, sizeof(version), "%d", list[i].version);
        if (exec(pg, "BEGIN", list[i].path, err) != 0)
            goto done;
        if (exec(pg, list[i].sql, list[i].path, err) != 0) {
            PQclear(PQexec(pg, "ROLLBACK"));
            goto done;
        }
        PGresult *ins = PQexecParams(pg,
                                     "INSERT INTO schema_migrations (version, name, checksum) "
                                     "VALUES ($1, $2, $3)",
                                     3, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(ins) == PGRES_COMMAND_OK;
        PQclear(ins);
        if (!ok || exec(pg, "COMMIT", list[i].path, err) != 0) {
            if (!ok)
                sp_err_set(err, "%s: cannot record it: %s", list[i].path, PQerrorMessage(pg));
            PQclear(PQexec(pg, "ROLLBACK"));
            goto done;
        }
        fprintf(out, "applied %s\n", list[i].name);
        applied++;
    }
    if (!status_only && applied == 0)
        fprintf(out, "migrations: nothing to apply (%d applied)\n", n);
    rc = 0;
done:
    PQclear(res);
    if (pg != NULL)
        PQfinish(pg); /* ends the session: the advisory lock goes with it */
    free_list(list, n);
    return rc;
}

int sp_seed(const char *conninfo, const char *file, FILE *out, sp_err *err)
{
    PGconn *pg = NULL;
    char *sql = NULL;
    int rc = -1;

    if (read_file(file, &sql, err) != 0)
        return -1;
    if ((pg = connect_db(conninfo, err)) == NULL)
        goto done;
    if (exec(pg, "BEGIN", file, err) != 0)
        goto done;
    if (exec(pg, sql, file, err) != 0) {
        PQclear(PQexec(pg, "ROLLBACK"));
        goto done;
    }
    if (exec(pg, "COMMIT", file, err) != 0)
        goto done;
    fprintf(out, "seeded from %s\n", file);
    rc = 0;
done:
    if (pg != NULL)
        PQfinish(pg);
    free(sql);
    return rc;
}
