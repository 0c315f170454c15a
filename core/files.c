/* files.c: the process's static files, read once and shared by generations (files.h).
 * The store is a short list (a documentation page has a handful of files) of the files some
 * generation or response still holds: a file with no reference left is freed at once, and a
 * reload finds the previous generation's files because that generation lives until the new
 * one has loaded. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

#define READ_TRIES 3 /* a file that keeps changing while it is read: give up after these */
/* A file's times tick with the kernel's clock (a few milliseconds), so a file written again
 * within a tick of its read keeps its times. Times this close to the read prove nothing: such a
 * file is read again next time (and compared) until its times are older than this. */
#define RACY_NS 2000000000ULL

static struct sp_file *store; /* the files found by path: every file not stale */
static int nfiles;            /* every file alive, stale ones too */

static unsigned long long ns_of(const struct timespec *ts)
{
    return (unsigned long long)ts->tv_sec * 1000000000ULL + (unsigned long long)ts->tv_nsec;
}

/* Is the file on disk (st) the one f was read from? */
static int same_file(const struct sp_file *f, const struct stat *st)
{
    return f->dev == (unsigned long long)st->st_dev && f->ino == (unsigned long long)st->st_ino &&
           f->size == (unsigned long long)st->st_size && f->mtime_ns == ns_of(&st->st_mtim) &&
           f->ctime_ns == ns_of(&st->st_ctim);
}

static void set_key(struct sp_file *f, const struct stat *st)
{
    struct timespec now;
    unsigned long long newest;

    f->dev = (unsigned long long)st->st_dev;
    f->ino = (unsigned long long)st->st_ino;
    f->size = (unsigned long long)st->st_size;
    f->mtime_ns = ns_of(&st->st_mtim);
    f->ctime_ns = ns_of(&st->st_ctim);
    clock_gettime(CLOCK_REALTIME, &now);
    newest = f->mtime_ns > f->ctime_ns ? f->mtime_ns : f->ctime_ns;
    f->racy = newest + RACY_NS > ns_of(&now);
}

static void unlink_from_store(struct sp_file *f)
{
    for (struct sp_file **p = &store; *p != NULL; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    f->next = NULL;
    f->stale = 1;
}

static void file_free(struct sp_file *f)
{
    free((char *)f->data);
    free(f->path);
    free(f);
    nfiles--;
}

static void set_etag(struct sp_file *f)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_Digest(f->data, f->len, md, &mdlen, EVP_sha256(), NULL);
    f->etag[0] = '"';
    for (int i = 0; i < 16; i++) {
        f->etag[1 + 2 * i] = hex[md[i] >> 4];
        f->etag[2 + 2 * i] = hex[md[i] & 15];
    }
    f->etag[33] = '"';
    f->etag[34] = '\0';
}

/* Reads fd whole into a new file. 0, or -1 with err; *changed when the file changed while it
 * was read (then try again). */
static int read_file(int fd, const char *path, size_t max, struct sp_file **out, int *changed,
                     sp_err *err)
{
    struct stat st, after;
    struct sp_file *f;
    char *data;
    size_t got = 0;

    *changed = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sp_err_set(err, "not a regular file");
        return -1;
    }
    if ((unsigned long long)st.st_size > (unsigned long long)max) {
        sp_err_set(err, "larger than the limit");
        return -1;
    }
    if ((data = malloc((size_t)st.st_size + 1)) == NULL) {
        sp_err_set(err, "out of memory");
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, data + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sp_err_set(err, "%s", strerror(errno));
            free(data);
            return -1;
        }
        if (n == 0)
            break; /* shorter than it was: it changed */
        got += (size_t)n;
    }
    if (got != (size_t)st.st_size || fstat(fd, &after) != 0 ||
        after.st_size != st.st_size || ns_of(&after.st_mtim) != ns_of(&st.st_mtim) ||
        ns_of(&after.st_ctim) != ns_of(&st.st_ctim)) {
        free(data);
        *changed = 1;
        sp_err_set(err, "changed while it was read");
        return -1;
    }
    data[got] = '\0';
    if ((f = calloc(1, sizeof(*f))) == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        free(data);
        sp_err_set(err, "out of memory");
        return -1;
    }
    f->data = data;
    f->len = got;
    f->refs = 1;
    set_key(f, &st);
    set_etag(f);
    nfiles++;
    *out = f;
    return 0;
}

int sp_file_get(const char *path, size_t max, struct sp_file **out, sp_err *err)
{
    struct sp_file *f, *found = NULL;
    struct stat st;
    int fd, changed = 0, rc = -1;

    for (f = store; f != NULL; f = f->next)
        if (strcmp(f->path, path) == 0) {
            found = f;
            break;
        }
    if (found != NULL && !found->racy && stat(path, &st) == 0 && same_file(found, &st) &&
        found->len <= max) {
        found->refs++;
        *out = found;
        return 0;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        sp_err_set(err, "%s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < READ_TRIES; i++)
        if ((rc = read_file(fd, path, max, &f, &changed, err)) == 0 || !changed)
            break;
    close(fd);
    if (rc != 0)
        return -1;
    if (found != NULL && found->len == f->len && memcmp(found->data, f->data, f->len) == 0) {
        found->dev = f->dev; /* touched, or copied again: the same bytes, the same object */
        found->ino = f->ino;
        found->size = f->size;
        found->mtime_ns = f->mtime_ns;
        found->ctime_ns = f->ctime_ns;
        found->racy = f->racy;
        sp_file_unref(f); /* not in the store: freed */
        found->refs++;
        *out = found;
        return 0;
    }
    if (found != NULL)
        unlink_from_store(found); /* changed on disk: whoever holds it keeps the old bytes */
    f->next = store;
    store = f;
    *out = f;
    return 0;
}

void sp_file_ref(struct sp_file *f)
{
    f->refs++;
}

void sp_file_unref(struct sp_file *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    if (!f->stale)
        unlink_from_store(f);
    file_free(f);
}

void sp_file_release(void *f)
{
    sp_file_unref(f);
}

int sp_files_count(void)
{
    return nfiles;
}
