/* migrate.c: `spacer migrate` and `spacer seed`. Files dir/NNNN_name.sql are applied in
 * order, each in one transaction together with its row in schema_migrations(version, name,
 * checksum, applied_at); the SHA-256 of an applied file must never change (fix forward with
 * a new file). A session advisory lock serialises concurrent runs, on one machine or many.
 * Knows libpq and files, never a table of the product. Blocking libpq: command line only,
 * never on an event loop. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define MIGRATE_LOCK 7391524601L /* pg_advisory_lock key of `spacer migrate` */

static const char CREATE_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

struct migration {
    int version;
    char name[200];  /* "0001_create_users" */
    char path[1024]; /* dir/0001_create_users.sql */
    char checksum[65];
    char *sql; /* the file's text, NUL-terminated; the list's */
};

/* What schema_migrations says of one file (pointers into a PGresult). */
struct applied {
    const char *name, *checksum, *when;
};

static int read_file(const char *path, char **out, sp_err *err);
static void sha256_hex(const char *s, size_t len, char out[65]);
static int list_migrations(const char *dir, struct migration **out, int *n, sp_err *err);
static void free_list(struct migration *list, int n);
static int exec(PGconn *pg, const char *sql, const char *what, sp_err *err);
static PGconn *connect_db(const char *conninfo, sp_err *err);
static int load_applied(PGconn *pg, PGresult **out, sp_err *err);
static int find_applied(PGresult *res, int version, struct applied *a);
static int take_lock(PGconn *pg, FILE *out, sp_err *err);
static int apply_one(PGconn *pg, const struct migration *m, sp_err *err);

/* On success *out is the caller's (NUL-terminated, to free()). A file with a NUL byte is
 * refused: libpq would run only the text before it, and the checksum would lie. */
static int read_file(const char *path, char **out, sp_err *err)
{
    int rc = -1;
    FILE *f = fopen(path, "rb");
    struct sp_buf b = {0};
    char chunk[8192];
    size_t n;

    if (f == NULL) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        goto done;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sp_buf_add(&b, chunk, n);
    if (ferror(f)) {
        sp_err_set(err, "%s: read error", path);
        goto done;
    }
    sp_buf_add(&b, "", 0); /* an empty file is an empty string, not NULL */
    if (strlen(b.data) != b.len) {
        sp_err_set(err, "%s: contains a NUL byte", path);
        goto done;
    }
    *out = b.data;
    b.data = NULL; /* now the caller's */
    rc = 0;
done:
    if (f != NULL)
        fclose(f);
    sp_buf_free(&b);
    return rc;
}

static void sha256_hex(const char *s, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return; /* an empty checksum never matches: the run stops, loudly */
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int cmp_migration(const void *a, const void *b)
{
    int x = ((const struct migration *)a)->version, y = ((const struct migration *)b)->version;

    return (x > y) - (x < y);
}

/* 1 for "NNNN_name.sql" (four digits, not 0000, a non-empty name), setting *version. */
static int parse_name(const char *fname, int *version)
{
    size_t len = strlen(fname);

    if (len < 10 || strcmp(fname + len - 4, ".sql") != 0 || fname[4] != '_')
        return 0;
    for (int i = 0; i < 4; i++)
        if (fname[i] < '0' || fname[i] > '9')
            return 0;
    *version = atoi(fname);
    return *version > 0;
}

/* Reads every NNNN_name.sql of dir, sorted by version, with its text and checksum. Dot files
 * (editor droppings) and files not ending in .sql are skipped; any other *.sql is an error,
 * so a misnamed migration is never silently left out. On success *out (n entries) is the
 * caller's, to free with free_list(). */
static int list_migrations(const char *dir, struct migration **out, int *n, sp_err *err)
{
    int rc = -1, count = 0, cap = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    struct migration *list = NULL;

    if (d == NULL) {
        sp_err_set(err, "%s: %s", dir, strerror(errno));
        goto done;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        int version;

        if (e->d_name[0] == '.' || len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        if (!parse_name(e->d_name, &version) || len - 4 >= sizeof(list->name)) {
            sp_err_set(err, "%s/%s: migration files are named NNNN_name.sql", dir, e->d_name);
            goto done;
        }
        if (count == cap) {
            struct migration *bigger;
            cap = cap ? 2 * cap : 16;
            if ((bigger = realloc(list, sizeof(*list) * (size_t)cap)) == NULL) {
                sp_err_set(err, "out of memory");
                goto done;
            }
            list = bigger;
        }
        struct migration *m = &list[count++];
        memset(m, 0, sizeof(*m));
        m->version = version;
        snprintf(m->name, sizeof(m->name), "%.*s", (int)(len - 4), e->d_name);
        if ((size_t)snprintf(m->path, sizeof(m->path), "%s/%s", dir, e->d_name) >=
            sizeof(m->path)) {
            sp_err_set(err, "%s/%s: path too long", dir, e->d_name);
            goto done;
        }
    }
    if (count > 1)
        qsort(list, (size_t)count, sizeof(*list), cmp_migration);
    for (int i = 0; i < count; i++) {
        if (i > 0 && list[i].version == list[i - 1].version) {
            sp_err_set(err, "%s and %s share the version %04d", list[i - 1].path, list[i].path,
                       list[i].version);
            goto done;
        }
        if (read_file(list[i].path, &list[i].sql, err) != 0)
            goto done;
        sha256_hex(list[i].sql, strlen(list[i].sql), list[i].checksum);
    }
    *out = list;
    *n = count;
    list = NULL; /* now the caller's */
    rc = 0;
done:
    if (d != NULL)
        closedir(d);
    free_list(list, count);
    return rc;
}

static void free_list(struct migration *list, int n)
{
    for (int i = 0; list != NULL && i < n; i++)
        free(list[i].sql);
    free(list);
}

/* Runs sql (several statements are fine: simple protocol); 0 when it succeeded. A failure
 * names what (the file) and, when the server says where, the line: "file.sql:12: msg". */
static int exec(PGconn *pg, const char *sql, const char *what, sp_err *err)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    const char *msg, *pos;
    long at, line = 1, chars = 0;
    int rc = -1;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
        rc = 0; /* EMPTY_QUERY: a file of comments only */
        goto done;
    }
    msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL) {
        msg = PQerrorMessage(pg);
        msg = *msg ? msg : "unknown error";
    }
    pos = res != NULL ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
    if (pos == NULL) {
        sp_err_set(err, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
        goto done;
    }
    /* The position counts characters from 1, not bytes: skip UTF-8 continuation bytes. */
    at = strtol(pos, NULL, 10);
    for (const char *p = sql; *p != '\0'; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && ++chars >= at)
            break;
        line += *p == '\n';
    }
    sp_err_set(err, "%s:%ld: %.*s", what, line, (int)strcspn(msg, "\n"), msg);
done:
    PQclear(res);
    return rc;
}

/* On success the connection is the caller's, to PQfinish(). */
static PGconn *connect_db(const char *conninfo, sp_err *err)
{
    PGconn *pg = PQconnectdb(conninfo != NULL ? conninfo : "");

    if (PQstatus(pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(pg);
        sp_err_set(err, "cannot connect to the database: %.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pg);
        return NULL;
    }
    if (exec(pg, "SET client_min_messages = warning; SET application_name = 'spacer migrate'",
             "session settings", err) != 0) {
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Reads schema_migrations into *out (the caller's, PQclear()), or leaves *out NULL when
 * there is no such table (a database never migrated: everything is pending). */
static int load_applied(PGconn *pg, PGresult **out, sp_err *err)
{
    int rc = -1;
    PGresult *res = PQexec(pg, "SELECT to_regclass('schema_migrations') IS NOT NULL");

    *out = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sp_err_set(err, "schema_migrations: %.*s", (int)strcspn(PQerrorMessage(pg), "\n"),
                   PQerrorMessage(pg));
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        rc = 0;
        goto done;
    }
    PQclear(res);
    res = PQexec(pg, "SELECT version, name, checksum,"
                     " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"
                     " FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sp_err_set(err, "schema_migrations: %.*s", (int)strcspn(PQerrorMessage(pg), "\n"),
                   PQerrorMessage(pg));
        goto done;
    }
    *out = res;
    res = NULL; /* now the caller's */
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* 1 and *a filled when version is in res (NULL res: nothing is applied). */
static int find_applied(PGresult *res, int version, struct applied *a)
{
    for (int r = 0; res != NULL && r < PQntuples(res); r++) {
        if (atoi(PQgetvalue(res, r, 0)) != version)
            continue;
        a->name = PQgetvalue(res, r, 1);
        a->checksum = PQgetvalue(res, r, 2);
        a->when = PQgetvalue(res, r, 3);
        return 1;
    }
    return 0;
}

/* The session advisory lock of `spacer migrate`; says so when another run holds it. */
static int take_lock(PGconn *pg, FILE *out, sp_err *err)
{
    int rc = -1;
    char sql[64];
    PGresult *res;

    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%ld)", MIGRATE_LOCK);
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sp_err_set(err, "advisory lock: %.*s", (int)strcspn(PQerrorMessage(pg), "\n"),
                   PQerrorMessage(pg));
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        fprintf(out, "migrations: waiting for another spacer migrate to finish\n");
        fflush(out);
        snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%ld)", MIGRATE_LOCK);
        if (exec(pg, sql, "advisory lock", err) != 0)
            goto done;
    }
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* One migration, one transaction: its text and its schema_migrations row, or neither. */
static int apply_one(PGconn *pg, const struct migration *m, sp_err *err)
{
    int rc = -1, began = 0;
    char version[16];
    const char *params[3] = {version, m->name + 5, m->checksum};
    PGresult *res = NULL;

    snprintf(version, sizeof(version), "%d", m->version);
    if (exec(pg, "BEGIN", m->path, err) != 0)
        goto done;
    began = 1;
    if (exec(pg, m->sql, m->path, err) != 0)
        goto done;
    res = PQexecParams(pg,
                       "INSERT INTO schema_migrations (version, name, checksum) "
                       "VALUES ($1, $2, $3)",
                       3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        sp_err_set(err, "%s: cannot record it: %.*s", m->path,
                   (int)strcspn(PQerrorMessage(pg), "\n"), PQerrorMessage(pg));
        goto done;
    }
    began = 0; /* COMMIT ends the transaction whether it succeeds or not */
    if (exec(pg, "COMMIT", m->path, err) != 0)
        goto done;
    rc = 0;
done:
    PQclear(res);
    if (began)
        PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

int sp_migrate(const char *conninfo, const char *dir, int status_only, FILE *out, sp_err *err)
{
    int rc = -1, n = 0, applied = 0;
    struct migration *list = NULL;
    const struct migration *changed = NULL;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    struct applied a;

    if (list_migrations(dir, &list, &n, err) != 0)
        goto done;
    if ((pg = connect_db(conninfo, err)) == NULL)
        goto done;
    /* Held until PQfinish(): a second run waits here, then finds everything applied. A
     * status only reads, so it neither waits nor creates the table. */
    if (!status_only &&
        (take_lock(pg, out, err) != 0 || exec(pg, CREATE_TABLE, "schema_migrations", err) != 0))
        goto done;
    if (load_applied(pg, &res, err) != 0)
        goto done;

    /* Every applied file must be as it was applied, before anything new runs. */
    for (int i = 0; i < n; i++) {
        if (!find_applied(res, list[i].version, &a))
            continue;
        if (strcmp(a.checksum, list[i].checksum) != 0 && changed == NULL)
            changed = &list[i];
        if (strcmp(a.name, list[i].name + 5) != 0 && !status_only)
            fprintf(out, "warning: %s was applied as %04d_%s\n", list[i].path, list[i].version,
                    a.name);
    }

    if (status_only) {
        for (int i = 0; i < n; i++) {
            if (!find_applied(res, list[i].version, &a))
                fprintf(out, "pending  %s\n", list[i].name);
            else if (strcmp(a.checksum, list[i].checksum) != 0)
                fprintf(out, "changed  %s  %s  (checksum differs from the applied file)\n",
                        list[i].name, a.when);
            else
                fprintf(out, "applied  %s  %s\n", list[i].name, a.when);
        }
    }
    /* Applied once, file gone since: say so, never undo it. */
    for (int r = 0; res != NULL && r < PQntuples(res); r++) {
        int version = atoi(PQgetvalue(res, r, 0)), found = 0;
        for (int i = 0; i < n && !found; i++)
            found = list[i].version == version;
        if (!found)
            fprintf(out, "%s%04d_%s has no file in %s\n",
                    status_only ? "missing  " : "warning: ", version, PQgetvalue(res, r, 1), dir);
    }
    if (changed != NULL) {
        sp_err_set(err,
                   "%s: checksum changed since it was applied (fix forward with a new migration)",
                   changed->path);
        goto done;
    }
    if (status_only) {
        rc = 0;
        goto done;
    }

    for (int i = 0; i < n; i++) {
        if (find_applied(res, list[i].version, &a))
            continue;
        if (apply_one(pg, &list[i], err) != 0)
            goto done; /* err says file:line; the files before it stay applied */
        fprintf(out, "applied %s\n", list[i].name);
        fflush(out);
        applied++;
    }
    if (applied == 0)
        fprintf(out, "migrations: nothing to apply (%d applied)\n", n);
    rc = 0;
done:
    PQclear(res);
    PQfinish(pg); /* ends the session: the advisory lock goes with it; NULL is fine */
    free_list(list, n);
    return rc;
}

int sp_seed(const char *conninfo, const char *file, FILE *out, sp_err *err)
{
    int rc = -1, began = 0;
    PGconn *pg = NULL;
    char *sql = NULL;

    if (read_file(file, &sql, err) != 0)
        goto done;
    if ((pg = connect_db(conninfo, err)) == NULL)
        goto done;
    if (exec(pg, "BEGIN", file, err) != 0)
        goto done;
    began = 1;
    if (exec(pg, sql, file, err) != 0)
        goto done;
    began = 0;
    if (exec(pg, "COMMIT", file, err) != 0)
        goto done;
    fprintf(out, "seeded from %s\n", file);
    rc = 0;
done:
    if (began)
        PQclear(PQexec(pg, "ROLLBACK"));
    PQfinish(pg);
    free(sql);
    return rc;
}
