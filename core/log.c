/* log.c: structured logging. Whole lines are written with one write(2) each (or a few whole
 * lines together), so lines from the master and the workers never interleave mid-line.
 *
 * A worker may buffer its access lines (sp_log_buffer_init): they are kept, whole, in one
 * buffer of the process and leave together when it would overflow, when the owner calls
 * sp_log_flush() (its timer, its idle loop, a reload, the exit), and before any other line
 * of the process, so the log keeps each process's order. */
#include "log.h"
#include "sp.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = SP_LOG_INFO;
static const char *log_role = "cli";

/* The buffered lines. Only the thread that set the buffer up touches it. */
static struct {
    char *data;
    size_t len, cap;
    size_t chunk; /* the largest write that stays whole: any size to a file, PIPE_BUF else */
    pthread_t owner;
} pending;

void sp_log_init(int level, const char *role)
{
    log_level = level;
    log_role = role;
}

int sp_log_enabled(enum sp_log_level level)
{
    return (int)level >= log_level;
}

void sp_json_escape(char *buf, size_t cap, size_t *len, const char *s)
{
    sp_json_escape_n(buf, cap, len, s, strlen(s));
}

void sp_json_escape_n(char *buf, size_t cap, size_t *len, const char *s, size_t slen)
{
    size_t n = *len;
    const char *end = s + slen;

    while (s < end && n + 7 < cap) {
        /* a run of bytes as they are, copied at once */
        const char *run = s;
        size_t room = cap - 7 - n, k;
        uint64_t w;
        while (end - s >= 8 && (memcpy(&w, s, 8), !sp_word_needs_json_escape(w)))
            s += 8;
        while (s < end && (unsigned char)*s >= 0x20 && *s != '"' && *s != '\\')
            s++;
        k = (size_t)(s - run);
        if (k > room) {
            memcpy(buf + n, run, room);
            n += room;
            break;
        }
        memcpy(buf + n, run, k);
        n += k;
        if (s == end || n + 7 >= cap)
            break;
        unsigned char ch = (unsigned char)*s++;
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else if (ch == '\t') {
            buf[n++] = '\\';
            buf[n++] = 't';
        } else if (ch < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    *len = n;
}

static void write_all(const char *p, size_t len)
{
    ssize_t w;

    while (len > 0 && (w = write(STDERR_FILENO, p, len)) > 0) {
        p += w;
        len -= (size_t)w;
    }
}

void sp_log_raw(const char *line, size_t len)
{
    sp_log_flush();
    write_all(line, len);
}

int sp_log_buffer_init(size_t cap)
{
    struct stat st;

    sp_log_buffer_free();
    if (cap == 0)
        return 0;
    if ((pending.data = malloc(cap)) == NULL)
        return -1;
    pending.cap = cap;
    pending.len = 0;
    pending.owner = pthread_self();
    /* A write to a pipe or a socket (a log collector) stays whole up to PIPE_BUF only. */
    pending.chunk = fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) ? cap : PIPE_BUF;
    return 0;
}

void sp_log_buffer_free(void)
{
    sp_log_flush();
    free(pending.data);
    pending.data = NULL;
    pending.cap = pending.len = 0;
}

int sp_log_buffered(const char *line, size_t len)
{
    int was_empty;

    if (pending.data == NULL || !pthread_equal(pthread_self(), pending.owner)) {
        write_all(line, len);
        return 0;
    }
    if (pending.len + len > pending.cap)
        sp_log_flush();
    if (len > pending.cap) {
        write_all(line, len);
        return 0;
    }
    was_empty = pending.len == 0;
    memcpy(pending.data + pending.len, line, len);
    pending.len += len;
    return was_empty;
}

size_t sp_log_pending(void)
{
    return pending.len;
}

void sp_log_flush(void)
{
    const char *p = pending.data, *end = p + pending.len;

    if (pending.len == 0 || !pthread_equal(pthread_self(), pending.owner))
        return;
    while (p < end) { /* whole lines, chunk bytes at most each (unless one line is longer) */
        size_t n = (size_t)(end - p);
        if (n > pending.chunk) {
            const char *cut = p + pending.chunk;
            while (cut > p && cut[-1] != '\n')
                cut--;
            if (cut > p) {
                n = (size_t)(cut - p);
            } else { /* one line longer than a chunk: whole, on its own */
                const char *nl = memchr(p, '\n', n);
                n = nl != NULL ? (size_t)(nl - p) + 1 : n;
            }
        }
        write_all(p, n);
        p += n;
    }
    pending.len = 0;
}

static void write_line(enum sp_log_level level, const char *fields, const char *msg, size_t n);

static void vlog(enum sp_log_level level, const char *fields, const char *fmt, va_list ap)
{
    char msg[2048];

    if ((int)level < log_level)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    write_line(level, fields, msg, strlen(msg));
}

void sp_log_text(enum sp_log_level level, const char *fields, const char *msg, size_t n)
{
    if ((int)level < log_level)
        return;
    write_line(level, fields, msg, n < 2047 ? n : 2047);
}

static void write_line(enum sp_log_level level, const char *fields, const char *msg, size_t n)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[4096];
    size_t len = 0;
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof(line), "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, sizeof(line) - len,
                            ".%03dZ\",\"level\":\"%s\",\"pid\":%d,\"role\":\"%s\",\"msg\":\"",
                            (int)(tv.tv_usec / 1000), names[level], (int)getpid(), log_role);
    sp_json_escape_n(line, sizeof(line) - 300, &len, msg, n);
    line[len++] = '"';
    if (fields != NULL && *fields) {
        size_t fl = strlen(fields);
        if (len + fl + 4 < sizeof(line)) {
            line[len++] = ',';
            memcpy(line + len, fields, fl);
            len += fl;
        }
    }
    line[len++] = '}';
    line[len++] = '\n';
    sp_log_raw(line, len);
}

void sp_log(enum sp_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void sp_log_fields(enum sp_log_level level, const char *fields, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, fields, fmt, ap);
    va_end(ap);
}
