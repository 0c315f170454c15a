/* files.h: the process's static files (a documentation page's scripts and styles): each read
 * once into one immutable block with its length and ETag, and shared by every generation that
 * asks for the same unchanged file, so a reload neither reads nor copies them again. Counted
 * references: a generation holds one per file it uses, a response being written holds one, so
 * neither a reload nor an old generation's end frees bytes still being sent.
 * One store per process, used from its loop's thread only. Knows files, never HTTP or Lua. */
#ifndef SP_FILES_H
#define SP_FILES_H

#include <stddef.h>

#include "sp.h"

#define SP_FILE_ETAG_LEN 35 /* "\"" + 32 hex digits + "\"" + NUL */

struct sp_file {
    const char *data; /* len bytes (NUL after them); never changes */
    size_t len;
    char etag[SP_FILE_ETAG_LEN]; /* the first 128 bits of its SHA-256, quoted, in hex */
    /* the store's own */
    int refs;
    int stale; /* the file changed on disk: no longer found, freed with its last reference */
    int racy;  /* its times were too recent at the read to vouch for it: read it again */
    char *path; /* resolved (realpath) */
    unsigned long long dev, ino, size, mtime_ns, ctime_ns;
    struct sp_file *next;
};

/* The file at path (resolved by the caller: realpath), at most max bytes. The same object,
 * with one more reference, when the store has that path and the file's device, inode, size,
 * modification and change times are what they were when it was read (times older than the
 * read by 2 s or more: younger ones may not have ticked yet); else it is read now (a read that
 * blocks: for a generation's load, never for a request), and the same object is still given
 * when the bytes are the same. On success *out holds
 * a reference for the caller, to drop with sp_file_unref(); else -1 and err says why. */
int sp_file_get(const char *path, size_t max, struct sp_file **out, sp_err *err);
void sp_file_ref(struct sp_file *f);
/* Drops a reference; the last one frees the file. NULL is fine. */
void sp_file_unref(struct sp_file *f);
/* The same, with the signature of a release callback (sp_http_respond_ref). */
void sp_file_release(void *f);
/* Files the store holds now (live ones, changed ones still referenced too). */
int sp_files_count(void);

#endif
