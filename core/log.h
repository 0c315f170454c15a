/* log.h: one JSON object per line on stderr, for operators and their log shippers. */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stddef.h>

enum sp_log_level { SP_LOG_DEBUG, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR };

void sp_log_init(int level, const char *role); /* role: "master", "worker", "cli" */
void sp_log(enum sp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line with extra fields: fields is "\"key\":value,..." already JSON, may be NULL. */
void sp_log_fields(enum sp_log_level level, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line whose message is n bytes of text as is (NUL bytes included, written \u0000). */
void sp_log_text(enum sp_log_level level, const char *fields, const char *msg, size_t n);
/* Writes a raw, already formatted JSON line (the buffered lines first). */
void sp_log_raw(const char *line, size_t len);

/* The access log's buffer: cap bytes (0: none, every line is written at once). -1 when out of
 * memory. The calling thread owns it; lines of other threads are written at once. */
int sp_log_buffer_init(size_t cap);
/* Writes what the buffer holds, then frees it. */
void sp_log_buffer_free(void);
/* Buffers whole lines (the caller's line ends with a newline); writes what was buffered
 * first when the line would not fit, and a line larger than the buffer at once. Returns 1
 * when the buffer was empty before this line (the caller arms its flush), else 0. */
int sp_log_buffered(const char *line, size_t len);
/* Writes the buffered lines now (a no-op when there are none). Every other line of the
 * process calls it first. */
void sp_log_flush(void);
/* Bytes waiting in the buffer. */
size_t sp_log_pending(void);
int sp_log_enabled(enum sp_log_level level);

/* Appends s to buf (capacity cap, current length *len) as a JSON string body, escaped. */
void sp_json_escape(char *buf, size_t cap, size_t *len, const char *s);
/* The same for n bytes that may hold NUL bytes. */
void sp_json_escape_n(char *buf, size_t cap, size_t *len, const char *s, size_t n);

#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)
#define sp_info(...)  sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)

#endif
