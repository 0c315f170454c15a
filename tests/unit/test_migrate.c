/* test_migrate.c: the migrations runner and the schema it builds, against a real PostgreSQL.
 * SPACER_TEST_DATABASE_URL names a database of a cluster where we may create databases
 * (tools/test.sh starts a throw-away one); without it every test fails. Each test gets its
 * own database, spacer_migtest_<pid>_<n>, dropped again at its end, so the real
 * sql/migrations and sql/seed.sql (read from the current directory: run from the project
 * root) are applied to an empty database every time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "migrate.h"
#include "sp.h"

#define MIG_DIR   "sql/migrations"
#define SEED_FILE "sql/seed.sql"
#define MAX_FILES 64

struct fx {
    PGconn *admin; /* on SPACER_TEST_DATABASE_URL: creates and drops the test's database */
    PGconn *db;    /* on the test's database, opened by db_conn() */
    char dbname[64];
    char *url; /* the test's database: what sp_migrate() gets */
    char tmpdir[128];
    int nfiles; /* the real migrations */
    char files[MAX_FILES][128];
};

/* ---- helpers ------------------------------------------------------------------------------ */

/* base's connection parameters with dbname replaced; the caller frees the result. Works for
 * both libpq forms (key=value and postgresql://). */
static char *url_with_db(const char *base, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &errmsg);
    struct sp_buf b = {0};

    if (opts == NULL)
        fail_msg("SPACER_TEST_DATABASE_URL does not parse: %s", errmsg ? errmsg : "?");
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? NULL : o->val;
        if (v == NULL || v[0] == '\0')
            continue;
        sp_buf_printf(&b, "%s='", o->keyword);
        for (const char *p = v; *p; p++) {
            if (*p == '\'' || *p == '\\')
                sp_buf_addc(&b, '\\');
            sp_buf_addc(&b, *p);
        }
        sp_buf_adds(&b, "' ");
    }
    sp_buf_printf(&b, "dbname='%s'", dbname);
    PQconninfoFree(opts);
    return b.data;
}

static PGconn *connect_or_fail(const char *url)
{
    PGconn *c = PQconnectdb(url);

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect (%s): %s", url, PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static PGconn *db_conn(struct fx *f)
{
    if (f->db == NULL)
        f->db = connect_or_fail(f->url);
    return f->db;
}

/* Runs sql, which must succeed. */
static void ok_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "# %s\n#   -> %s", sql, PQerrorMessage(c));
        PQclear(r);
        fail_msg("statement failed");
    }
    PQclear(r);
}

/* The first column of the first row of sql, copied into out. */
static const char *value(PGconn *c, const char *sql, char *out, size_t cap)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "# %s\n#   -> %s", sql, PQerrorMessage(c));
        PQclear(r);
        fail_msg("query failed or returned no row");
    }
    snprintf(out, cap, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static long number(PGconn *c, const char *sql)
{
    char v[64];

    return strtol(value(c, sql, v, sizeof(v)), NULL, 10);
}

/* sql must fail with SQLSTATE state (and, unless NULL, name the constraint). */
static void expect_fail(PGconn *c, const char *sql, const char *state, const char *constraint)
{
    PGresult *r = PQexec(c, sql);
    const char *got, *name;

    if (PQresultStatus(r) != PGRES_FATAL_ERROR) {
        PQclear(r);
        fail_msg("succeeded, expected SQLSTATE %s: %s", state, sql);
    }
    got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    name = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    if (got == NULL || strcmp(got, state) != 0 ||
        (constraint != NULL && (name == NULL || strcmp(name, constraint) != 0))) {
        fprintf(stderr, "# %s\n#   -> %s (%s, constraint %s)\n", sql, PQerrorMessage(c),
                got ? got : "?", name ? name : "none");
        PQclear(r);
        fail_msg("expected SQLSTATE %s, constraint %s", state, constraint ? constraint : "any");
    }
    PQclear(r);
}

/* sp_migrate() with its output captured into *output (the caller frees it). */
static int migrate(struct fx *f, const char *dir, int status_only, char **output, sp_err *err)
{
    size_t len = 0;
    FILE *out = open_memstream(output, &len);
    int rc;

    assert_non_null(out);
    memset(err, 0, sizeof(*err));
    rc = sp_migrate(f->url, dir, status_only, out, err);
    fclose(out);
    return rc;
}

/* sp_migrate() must succeed; returns its output (the caller frees it). */
static char *migrate_ok(struct fx *f, const char *dir, int status_only)
{
    sp_err err;
    char *output = NULL;

    if (migrate(f, dir, status_only, &output, &err) != 0)
        fail_msg("sp_migrate(%s): %s\noutput: %s", dir, err.msg, output ? output : "");
    return output;
}

static int count_lines_with(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);

    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

static void write_file(const char *dir, const char *name, const char *mode, const char *text)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, mode);
    if (fp == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    fputs(text, fp);
    fclose(fp);
}

/* A private copy of the real migrations in f->tmpdir (removed by the teardown). */
static void copy_migrations(struct fx *f)
{
    for (int i = 0; i < f->nfiles; i++) {
        char src[512], buf[8192];
        size_t n;
        FILE *in, *out;

        snprintf(src, sizeof(src), "%s/%s.sql", MIG_DIR, f->files[i]);
        snprintf(buf, sizeof(buf), "%s/%s.sql", f->tmpdir, f->files[i]);
        in = fopen(src, "rb");
        out = fopen(buf, "wb");
        assert_non_null(in);
        assert_non_null(out);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* The real migrations' names ("0001_create_users"), sorted. */
static void list_real_migrations(struct fx *f)
{
    DIR *d = opendir(MIG_DIR);
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        assert_true(f->nfiles < MAX_FILES);
        snprintf(f->files[f->nfiles++], sizeof(f->files[0]), "%.*s", (int)(len - 4), e->d_name);
    }
    closedir(d);
    qsort(f->files, (size_t)f->nfiles, sizeof(f->files[0]), cmp_str);
    assert_true(f->nfiles >= 1);
}

static void sha256_file(const char *path, char out[65])
{
    FILE *fp = fopen(path, "rb");
    struct sp_buf b = {0};
    char chunk[4096];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n;

    assert_non_null(fp);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        sp_buf_add(&b, chunk, n);
    fclose(fp);
    assert_int_equal(EVP_Digest(b.data ? b.data : "", b.len, md, &mdlen, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    sp_buf_free(&b);
}

static void rm_tree_flat(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int setup(void **state)
{
    static int serial;
    const char *base = getenv("SPACER_TEST_DATABASE_URL");
    struct fx *f;
    char sql[128];
    struct stat st;

    if (base == NULL || base[0] == '\0') {
        print_error("SPACER_TEST_DATABASE_URL is not set: the migration tests need a PostgreSQL "
                    "where they may CREATE DATABASE (tools/test.sh starts a throw-away one), "
                    "e.g.\n  SPACER_TEST_DATABASE_URL=\"$(sh tools/devdb.sh url DIR PORT)\"\n");
        return -1;
    }
    if (stat(MIG_DIR, &st) != 0 || !S_ISDIR(st.st_mode)) {
        print_error("%s: not found: run the test from the project root\n", MIG_DIR);
        return -1;
    }
    f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->admin = PQconnectdb(base);
    if (PQstatus(f->admin) != CONNECTION_OK) {
        print_error("cannot connect to SPACER_TEST_DATABASE_URL: %s", PQerrorMessage(f->admin));
        PQfinish(f->admin);
        free(f);
        return -1;
    }
    PQclear(PQexec(f->admin, "SET client_min_messages = warning"));
    snprintf(f->dbname, sizeof(f->dbname), "spacer_migtest_%d_%d", (int)getpid(), ++serial);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
    ok_sql(f->admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->dbname);
    ok_sql(f->admin, sql);
    f->url = url_with_db(base, f->dbname);
    snprintf(f->tmpdir, sizeof(f->tmpdir), "/tmp/spacer-migtest-XXXXXX");
    assert_non_null(mkdtemp(f->tmpdir));
    list_real_migrations(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char sql[128];

    PQfinish(f->db);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
    PQclear(PQexec(f->admin, sql));
    PQfinish(f->admin);
    rm_tree_flat(f->tmpdir);
    free(f->url);
    free(f);
    return 0;
}

/* ---- the runner --------------------------------------------------------------------------- */

static void test_applies_each_once(void **state)
{
    struct fx *f = *state;
    char *out = migrate_ok(f, MIG_DIR, 0), line[256], sql[256], want[65], got[256];
    PGconn *c;

    for (int i = 0; i < f->nfiles; i++) {
        snprintf(line, sizeof(line), "applied %s\n", f->files[i]);
        if (strstr(out, line) == NULL)
            fail_msg("no \"applied %s\" in:\n%s", f->files[i], out);
    }
    assert_int_equal(count_lines_with(out, "applied "), f->nfiles);
    free(out);

    c = db_conn(f);
    assert_int_equal(number(c, "SELECT count(*) FROM schema_migrations"), f->nfiles);
    for (int i = 0; i < f->nfiles; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s.sql", MIG_DIR, f->files[i]);
        sha256_file(path, want);
        snprintf(sql, sizeof(sql),
                 "SELECT checksum || '|' || name FROM schema_migrations WHERE version = %d",
                 atoi(f->files[i]));
        snprintf(line, sizeof(line), "%s|%s", want, f->files[i] + 5);
        assert_string_equal(value(c, sql, got, sizeof(got)), line);
    }
    assert_int_equal(number(c, "SELECT count(*) FROM pg_extension"
                               " WHERE extname IN ('citext', 'btree_gist')"),
                     2);
    assert_int_equal(number(c, "SELECT count(*) FROM unnest(ARRAY['users', 'spaces', 'bookings',"
                               " 'payments', 'invoices', 'invoice_counters', 'idempotency_keys',"
                               " 'login_attempts']) t WHERE to_regclass(t) IS NOT NULL"),
                     8);

    /* Again: nothing to do, nothing recorded twice. */
    out = migrate_ok(f, MIG_DIR, 0);
    assert_non_null(strstr(out, "nothing to apply"));
    assert_int_equal(count_lines_with(out, "applied "), 0);
    free(out);
    assert_int_equal(number(c, "SELECT count(*) FROM schema_migrations"), f->nfiles);
}

static void test_status_lists_them(void **state)
{
    struct fx *f = *state;
    char *out = migrate_ok(f, MIG_DIR, 1), line[160];

    /* Before: all pending, and a status changes nothing (not even schema_migrations). */
    for (int i = 0; i < f->nfiles; i++) {
        snprintf(line, sizeof(line), "pending  %s\n", f->files[i]);
        if (strstr(out, line) == NULL)
            fail_msg("no \"%s\" in:\n%s", line, out);
    }
    free(out);
    assert_int_equal(number(db_conn(f), "SELECT count(*) FROM pg_class"
                                        " WHERE relname = 'schema_migrations'"),
                     0);

    free(migrate_ok(f, MIG_DIR, 0));
    out = migrate_ok(f, MIG_DIR, 1);
    assert_int_equal(count_lines_with(out, "applied  "), f->nfiles);
    assert_int_equal(count_lines_with(out, "pending  "), 0);
    for (int i = 0; i < f->nfiles; i++) {
        snprintf(line, sizeof(line), "applied  %s  20", f->files[i]); /* then applied_at */
        if (strstr(out, line) == NULL)
            fail_msg("no \"%s\" in:\n%s", line, out);
    }
    assert_non_null(strstr(out, " UTC\n"));
    free(out);
}

static void test_checksum_guard(void **state)
{
    struct fx *f = *state;
    char *out = NULL, want[512];
    const char *victim = f->files[f->nfiles > 1 ? 1 : 0];
    sp_err err;
    char name[160];

    copy_migrations(f);
    free(migrate_ok(f, f->tmpdir, 0));

    /* A comment added to an applied file, and a new file behind it. */
    snprintf(name, sizeof(name), "%s.sql", victim);
    write_file(f->tmpdir, name, "a", "\n-- edited after it was applied\n");
    write_file(f->tmpdir, "9999_create_later.sql", "w", "CREATE TABLE migtest_later (id int);\n");

    assert_int_equal(migrate(f, f->tmpdir, 0, &out, &err), -1);
    snprintf(want, sizeof(want),
             "%s/%s.sql: checksum changed since it was applied (fix forward with a new migration)",
             f->tmpdir, victim);
    assert_string_equal(err.msg, want);
    assert_int_equal(count_lines_with(out, "applied "), 0);
    free(out);
    assert_int_equal(number(db_conn(f), "SELECT count(*) FROM pg_class"
                                        " WHERE relname = 'migtest_later'"),
                     0);

    /* The status says which one, and fails the same way. */
    assert_int_equal(migrate(f, f->tmpdir, 1, &out, &err), -1);
    assert_string_equal(err.msg, want);
    snprintf(want, sizeof(want), "changed  %s  ", victim);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "pending  9999_create_later\n"));
    free(out);
}

static void test_failed_migration_rolls_back(void **state)
{
    struct fx *f = *state;
    char *out = NULL;
    sp_err err;
    PGconn *c;

    write_file(f->tmpdir, "0001_create_t1.sql", "w", "CREATE TABLE t1 (id int);\n");
    write_file(f->tmpdir, "0002_create_t2.sql", "w",
               "-- t2, then a mistake on line 4\nCREATE TABLE t2 (id int);\n\n"
               "SELECT nosuchcolumn FROM t1;\n");
    write_file(f->tmpdir, "0003_note.sql", "w", "-- only a comment: nothing to run\n");
    write_file(f->tmpdir, "README", "w", "not a migration\n");
    write_file(f->tmpdir, ".0004_editor_lock.sql", "w", "garbage\n");

    assert_int_equal(migrate(f, f->tmpdir, 0, &out, &err), -1);
    assert_non_null(strstr(out, "applied 0001_create_t1\n"));
    assert_null(strstr(out, "applied 0002"));
    free(out);
    if (strstr(err.msg, "/0002_create_t2.sql:4: ") == NULL ||
        strstr(err.msg, "nosuchcolumn") == NULL)
        fail_msg("error does not name file:line and the problem: %s", err.msg);

    c = db_conn(f);
    assert_int_equal(number(c, "SELECT count(*) FROM pg_class WHERE relname IN ('t1', 't2')"), 1);
    assert_int_equal(number(c, "SELECT string_agg(version::text, ',') FROM schema_migrations"), 1);

    /* Never applied, so it may still be fixed: the rest follows. */
    write_file(f->tmpdir, "0002_create_t2.sql", "w", "CREATE TABLE t2 (id int);\n");
    out = migrate_ok(f, f->tmpdir, 0);
    assert_string_equal(out, "applied 0002_create_t2\napplied 0003_note\n");
    free(out);
    assert_int_equal(number(c, "SELECT count(*) FROM schema_migrations"), 3);
}

static void test_bad_names_and_dirs(void **state)
{
    struct fx *f = *state;
    char *out = NULL, path[256];
    sp_err err;

    assert_int_equal(migrate(f, "/nonexistent/migrations", 0, &out, &err), -1);
    assert_string_equal(err.msg, "/nonexistent/migrations: No such file or directory");
    free(out);

    write_file(f->tmpdir, "01_short.sql", "w", "SELECT 1;\n");
    assert_int_equal(migrate(f, f->tmpdir, 0, &out, &err), -1);
    assert_non_null(strstr(err.msg, "01_short.sql: migration files are named NNNN_name.sql"));
    free(out);

    snprintf(path, sizeof(path), "%s/01_short.sql", f->tmpdir);
    unlink(path);
    write_file(f->tmpdir, "0001_a.sql", "w", "SELECT 1;\n");
    write_file(f->tmpdir, "0001_b.sql", "w", "SELECT 1;\n");
    assert_int_equal(migrate(f, f->tmpdir, 0, &out, &err), -1);
    assert_non_null(strstr(err.msg, "share the version 0001"));
    free(out);

    /* The refused runs never reached the database. */
    assert_int_equal(number(db_conn(f), "SELECT count(*) FROM pg_class"
                                        " WHERE relname = 'schema_migrations'"),
                     0);
}

static void test_bad_connection(void **state)
{
    struct fx *f = *state;
    size_t len = 0;
    char *output = NULL;
    FILE *out = open_memstream(&output, &len);
    sp_err err;

    (void)f;
    assert_int_equal(
        sp_migrate("host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2", MIG_DIR, 0, out, &err),
        -1);
    assert_non_null(strstr(err.msg, "cannot connect to the database: "));
    assert_int_equal(
        sp_seed("host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2", SEED_FILE, out, &err),
        -1);
    assert_non_null(strstr(err.msg, "cannot connect to the database: "));
    fclose(out);
    free(output);
}

/* Several runs at the same moment: each file is applied by exactly one of them, and every
 * run succeeds (the late ones wait for the advisory lock, then find nothing to do). */
static void test_concurrent_runs(void **state)
{
    enum { RUNS = 3 };
    struct fx *f = *state;
    int go[2], results[2];
    pid_t pids[RUNS];
    int statuses[RUNS], total = 0;

    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(results), 0);
    for (int i = 0; i < RUNS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c, *output = NULL;
            size_t len = 0;
            FILE *out;
            sp_err err;
            int n = -1;

            close(go[1]);
            (void)!read(go[0], &c, 1); /* returns at EOF: all start together */
            out = open_memstream(&output, &len);
            if (sp_migrate(f->url, MIG_DIR, 0, out, &err) == 0) {
                fflush(out);
                n = count_lines_with(output, "applied 0");
            } else {
                fprintf(stderr, "# run %d: %s\n", i, err.msg);
            }
            fclose(out);
            (void)!write(results[1], &n, sizeof(n));
            _exit(n >= 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]); /* start */
    close(results[1]);
    for (int i = 0; i < RUNS; i++) /* all of them, before any assert may end the test */
        if (waitpid(pids[i], &statuses[i], 0) != pids[i])
            statuses[i] = -1;
    for (int i = 0; i < RUNS; i++) {
        int n = -1;
        assert_true(WIFEXITED(statuses[i]) && WEXITSTATUS(statuses[i]) == 0);
        assert_int_equal(read(results[0], &n, sizeof(n)), (ssize_t)sizeof(n));
        assert_true(n >= 0);
        total += n;
    }
    close(results[0]);
    assert_int_equal(total, f->nfiles);
    assert_int_equal(number(db_conn(f), "SELECT count(DISTINCT version) FROM schema_migrations"),
                     f->nfiles);
}

/* ---- the seed ----------------------------------------------------------------------------- */

static const char SNAPSHOT[] =
    "SELECT (SELECT count(*) FROM users) || '/' || (SELECT count(*) FROM spaces) || '/' ||"
    " (SELECT count(*) FROM bookings) || '/' ||"
    " (SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u) ||"
    " (SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM spaces s) ||"
    " coalesce((SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bookings b), '-')";

static int seed(struct fx *f, const char *file, char **output, sp_err *err)
{
    size_t len = 0;
    FILE *out = open_memstream(output, &len);
    int rc;

    assert_non_null(out);
    memset(err, 0, sizeof(*err));
    rc = sp_seed(f->url, file, out, err);
    fclose(out);
    return rc;
}

static void test_seed_is_idempotent(void **state)
{
    struct fx *f = *state;
    char *out = NULL, before[256], after[256], v[128];
    sp_err err;
    PGconn *c;

    free(migrate_ok(f, MIG_DIR, 0));
    if (seed(f, SEED_FILE, &out, &err) != 0)
        fail_msg("sp_seed: %s", err.msg);
    assert_string_equal(out, "seeded from " SEED_FILE "\n");
    free(out);
    c = db_conn(f);
    value(c, SNAPSHOT, before, sizeof(before));
    if (seed(f, SEED_FILE, &out, &err) != 0)
        fail_msg("sp_seed, twice: %s", err.msg);
    free(out);
    assert_string_equal(value(c, SNAPSHOT, after, sizeof(after)), before);

    /* What the docs promise of the demo world. */
    assert_true(number(c, "SELECT count(*) FROM users") >= 8);
    assert_true(number(c, "SELECT count(*) FROM spaces") >= 12);
    assert_string_equal(value(c,
                              "SELECT role || ',' || is_verified FROM users"
                              " WHERE email = 'ADMIN@spacer.com'",
                              v, sizeof(v)),
                        "admin,true");
    assert_int_equal(number(c, "SELECT count(*) FROM users WHERE email IN ('owner1@example.com',"
                               " 'owner2@example.com', 'owner3@example.com') AND role = 'owner'"),
                     3);
    assert_int_equal(number(c, "SELECT count(*) FROM users WHERE email IN ('client1@example.com',"
                               " 'client2@example.com', 'client3@example.com',"
                               " 'legacy@example.com') AND role = 'client'"),
                     4);
    assert_int_equal(number(c, "SELECT count(*) FROM users WHERE password_hash !~"
                               " '^\\$2b\\$12\\$[./A-Za-z0-9]{53}$'"),
                     0);
    assert_int_equal(number(c, "SELECT count(DISTINCT owner_id) FROM spaces"), 3);
    assert_string_equal(value(c,
                              "SELECT location || ',' || price_per_hour_minor || ',' ||"
                              " price_per_day_minor || ',' || currency FROM spaces"
                              " WHERE title = 'Cozy Coworking Hub'",
                              v, sizeof(v)),
                        "Nairobi CBD,50000,700000,KES");
    assert_string_equal(value(c,
                              "SELECT location || ',' || price_per_hour_minor || ',' ||"
                              " price_per_day_minor FROM spaces"
                              " WHERE title = 'Open Green Garden Venue'",
                              v, sizeof(v)),
                        "Karen,80000,600000");
    assert_true(number(c, "SELECT count(*) FROM spaces WHERE instant_book") >= 1);
    assert_true(number(c, "SELECT count(*) FROM spaces WHERE NOT is_available") >= 1);
    assert_int_equal(number(c, "SELECT count(*) FROM spaces"
                               " WHERE search @@ plainto_tsquery('simple', 'coworking')"),
                     1);
    /* Sample bookings are in the future and priced (16% VAT on the hours). */
    assert_int_equal(number(c, "SELECT count(*) FROM bookings WHERE start_at <= now()"
                               " OR total_minor <> subtotal_minor + tax_minor"
                               " OR (price_breakdown->>'total')::bigint <> total_minor"),
                     0);
}

static void test_seed_is_one_transaction(void **state)
{
    struct fx *f = *state;
    char *out = NULL, path[256];
    sp_err err;

    free(migrate_ok(f, MIG_DIR, 0));
    write_file(f->tmpdir, "seed.sql", "w",
               "INSERT INTO login_attempts (email) VALUES ('x@example.com');\n"
               "SELECT 1 / 0;\n");
    snprintf(path, sizeof(path), "%s/seed.sql", f->tmpdir);
    assert_int_equal(seed(f, path, &out, &err), -1);
    free(out);
    /* A run-time error has no position in the text: the file, then the message. */
    if (strstr(err.msg, "/seed.sql: division by zero") == NULL)
        fail_msg("unexpected error: %s", err.msg);
    assert_int_equal(number(db_conn(f), "SELECT count(*) FROM login_attempts"), 0);
}

/* ---- the schema's invariants -------------------------------------------------------------- */

#define OWNER  "(SELECT id FROM users WHERE email = 'mt-owner@example.com')"
#define CLIENT "(SELECT id FROM users WHERE email = 'mt-client@example.com')"
#define SPACE  "(SELECT id FROM spaces WHERE title = 'Hall A')"
#define SPACE2 "(SELECT id FROM spaces WHERE title = 'Hall B')"

static void booking_sql(
    char *out, size_t cap, const char *space, const char *status, const char *from, const char *to)
{
    snprintf(out, cap,
             "INSERT INTO bookings (client_id, space_id, start_at, end_at, status, currency,"
             " subtotal_minor, tax_minor, total_minor) VALUES (" CLIENT ", %s,"
             " '2031-03-01 %s+03', '2031-03-01 %s+03', '%s', 'KES', 100000, 16000, 116000)",
             space, from, to, status);
}

static void schema_fixture(struct fx *f)
{
    PGconn *c;

    free(migrate_ok(f, MIG_DIR, 0));
    c = db_conn(f);
    ok_sql(c, "INSERT INTO users (name, email, password_hash, role) VALUES"
              " ('Owner', 'mt-owner@example.com', 'h', 'owner'),"
              " ('Client', 'mt-client@example.com', 'h', 'client')");
    ok_sql(c, "INSERT INTO spaces (owner_id, title, description, location, capacity,"
              " price_per_hour_minor, price_per_day_minor) VALUES"
              " (" OWNER ", 'Hall A', 'A coworking hall', 'Nairobi CBD', 10, 50000, 700000),"
              " (" OWNER ", 'Hall B', 'Another hall', 'Karen', 10, 50000, 700000)");
}

static void test_confirmed_bookings_never_overlap(void **state)
{
    struct fx *f = *state;
    char sql[512];
    PGconn *c;

    schema_fixture(f);
    c = db_conn(f);
    booking_sql(sql, sizeof(sql), SPACE, "confirmed", "10:00", "12:00");
    ok_sql(c, sql);
    booking_sql(sql, sizeof(sql), SPACE, "confirmed", "11:00", "13:00");
    expect_fail(c, sql, "23P01", "bookings_slot_excl");
    booking_sql(sql, sizeof(sql), SPACE, "confirmed", "09:00", "18:00"); /* covers it */
    expect_fail(c, sql, "23P01", "bookings_slot_excl");

    /* Pending, declined and cancelled requests may overlap anything. */
    booking_sql(sql, sizeof(sql), SPACE, "pending", "11:00", "13:00");
    ok_sql(c, sql);
    ok_sql(c, sql);
    booking_sql(sql, sizeof(sql), SPACE, "cancelled", "10:00", "12:00");
    ok_sql(c, sql);
    booking_sql(sql, sizeof(sql), SPACE, "declined", "10:30", "11:30");
    ok_sql(c, sql);

    /* Touching is not overlapping ([start, end)); another space is another calendar. */
    booking_sql(sql, sizeof(sql), SPACE, "confirmed", "12:00", "13:00");
    ok_sql(c, sql);
    booking_sql(sql, sizeof(sql), SPACE2, "confirmed", "10:00", "12:00");
    ok_sql(c, sql);

    /* Approving an overlapping pending request is refused the same way. */
    expect_fail(c,
                "UPDATE bookings SET status = 'confirmed' WHERE status = 'pending'"
                " AND space_id = " SPACE,
                "23P01", "bookings_slot_excl");
    assert_int_equal(number(c, "SELECT count(*) FROM bookings WHERE status = 'confirmed'"), 3);
}

static void test_schema_refuses_bad_rows(void **state)
{
    struct fx *f = *state;
    char sql[512], v[64];
    PGconn *c;

    schema_fixture(f);
    c = db_conn(f);

    expect_fail(c,
                "INSERT INTO users (name, email, password_hash) VALUES"
                " ('Twin', 'MT-Owner@Example.COM', 'h')",
                "23505", "users_email_key");
    expect_fail(c, "UPDATE spaces SET capacity = 0 WHERE title = 'Hall A'", "23514",
                "spaces_capacity_check");
    expect_fail(c, "UPDATE spaces SET price_per_hour_minor = -1 WHERE title = 'Hall A'", "23514",
                "spaces_price_per_hour_check");
    expect_fail(c, "UPDATE users SET role = 'superuser' WHERE email = 'mt-owner@example.com'",
                "22P02", NULL);
    booking_sql(sql, sizeof(sql), SPACE, "pending", "12:00", "10:00");
    expect_fail(c, sql, "23514", "bookings_period_check");
    booking_sql(sql, sizeof(sql), SPACE, "pending", "10:00", "10:00");
    expect_fail(c, sql, "23514", "bookings_period_check");
    booking_sql(sql, sizeof(sql), SPACE, "pending", "10:00", "11:00");
    ok_sql(c, sql);
    expect_fail(c, "UPDATE bookings SET guests = 0", "23514", "bookings_guests_check");

    /* Owners and clients with history stay; a space is soft-deleted instead. */
    expect_fail(c, "DELETE FROM users WHERE email = 'mt-owner@example.com'", "23503", NULL);
    expect_fail(c, "DELETE FROM users WHERE email = 'mt-client@example.com'", "23503", NULL);
    expect_fail(c, "DELETE FROM spaces WHERE title = 'Hall A'", "23503", NULL);

    /* One completed and one pending payment per booking; a provider reference once. */
    ok_sql(c, "INSERT INTO payments (booking_id, client_id, amount_minor, currency,"
              " payment_method, provider, payment_status, provider_ref)"
              " SELECT id, client_id, total_minor, 'KES', 'mpesa', 'mpesa', 'completed', 'R1'"
              " FROM bookings");
    expect_fail(c,
                "INSERT INTO payments (booking_id, client_id, amount_minor, currency,"
                " payment_method, provider, payment_status)"
                " SELECT id, client_id, total_minor, 'KES', 'manual', 'manual', 'completed'"
                " FROM bookings",
                "23505", "payments_one_completed_idx");
    ok_sql(c, "INSERT INTO payments (booking_id, client_id, amount_minor, currency,"
              " payment_method, provider) SELECT id, client_id, 1, 'KES', 'manual', 'manual'"
              " FROM bookings");
    expect_fail(c,
                "INSERT INTO payments (booking_id, client_id, amount_minor, currency,"
                " payment_method, provider) SELECT id, client_id, 1, 'KES', 'manual', 'manual'"
                " FROM bookings",
                "23505", "payments_one_pending_idx");
    expect_fail(c,
                "INSERT INTO payments (booking_id, client_id, amount_minor, currency,"
                " payment_method, provider, payment_status, provider_ref)"
                " SELECT id, client_id, 1, 'KES', 'mpesa', 'mpesa', 'failed', 'R1' FROM bookings",
                "23505", "payments_provider_ref_key");

    /* Invoices: numbers from a gapless per-year counter, one invoice per booking. */
    assert_int_equal(number(c, "INSERT INTO invoice_counters AS k (year, last_number)"
                               " VALUES (2031, 1) ON CONFLICT (year) DO UPDATE"
                               " SET last_number = k.last_number + 1 RETURNING last_number"),
                     1);
    assert_int_equal(number(c, "INSERT INTO invoice_counters AS k (year, last_number)"
                               " VALUES (2031, 1) ON CONFLICT (year) DO UPDATE"
                               " SET last_number = k.last_number + 1 RETURNING last_number"),
                     2);
    expect_fail(c,
                "INSERT INTO invoices (number, booking_id, client_id, currency, subtotal_minor,"
                " tax_minor, total_minor) SELECT 'INV-31-1', id, client_id, 'KES', 0, 0, 0"
                " FROM bookings",
                "23514", "invoices_number_check");
    ok_sql(c, "INSERT INTO invoices (number, booking_id, client_id, currency, subtotal_minor,"
              " tax_minor, total_minor) SELECT 'INV-2031-000001', id, client_id, 'KES', 0, 0, 0"
              " FROM bookings");
    expect_fail(c,
                "INSERT INTO invoices (number, booking_id, client_id, currency, subtotal_minor,"
                " tax_minor, total_minor) SELECT 'INV-2031-000002', id, client_id, 'KES', 0, 0, 0"
                " FROM bookings",
                "23505", "invoices_booking_key");

    /* updated_at follows every UPDATE, whatever the caller forgot. */
    ok_sql(c, "UPDATE spaces SET updated_at = '2000-01-01' WHERE title = 'Hall A'");
    ok_sql(c, "UPDATE spaces SET capacity = 11 WHERE title = 'Hall A'");
    assert_string_equal(value(c,
                              "SELECT updated_at > '2001-01-01' FROM spaces"
                              " WHERE title = 'Hall A'",
                              v, sizeof(v)),
                        "t");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_applies_each_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_lists_them, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksum_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names_and_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_is_one_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirmed_bookings_never_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_refuses_bad_rows, setup, teardown),
    };

    return cmocka_run_group_tests_name("migrate", tests, NULL, NULL);
}
