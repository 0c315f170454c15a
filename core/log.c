/* log.c: structured logging. Each line is written with one write(2), so lines from the master
 * and the workers never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = SP_LOG_INFO;
static const char *log_role = "cli";

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

    for (; s < end && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
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

void sp_log_raw(const char *line, size_t len)
{
    ssize_t w;

    while (len > 0 && (w = write(STDERR_FILENO, line, len)) > 0) {
        line += w;
        len -= (size_t)w;
    }
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
