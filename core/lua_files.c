/* lua_files.c: spacer.files — reading a file whole, for what a generation keeps in memory
 * while it loads (static assets such as a documentation page's scripts): read() copies it into
 * a Lua string, static() gives a handle on the process's shared copy (files.h), which a
 * handler returns as a body that is written without a copy. A read blocks, so the prelude
 * allows both only while a generation loads, never in a request. Only files under
 * the working directory, the scripts or the plugins directory; never a hidden file (.env,
 * .git), the configuration file, nor the run-time state beside the pid file (var/), so
 * scripts cannot read the secrets the core keeps from them. Knows files, never what they are
 * for. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "files.h"
#include "gen.h"
#include "lua_spacer.h"

#define FILES_MAX_DEFAULT (16L * 1024 * 1024)
#define FILE_MT           "spacer.file"

/* Does the resolved path lie under the resolved root, without a hidden component below it? */
static int under_root(const char *path, const char *root)
{
    char real_root[PATH_MAX];
    size_t n;

    if (root == NULL || realpath(root, real_root) == NULL)
        return 0;
    n = strlen(real_root);
    if (n == 1) /* the root directory itself: every path is under it */
        n = 0;
    else if (strncmp(path, real_root, n) != 0 || path[n] != '/')
        return 0;
    for (const char *p = path + n; *p; p++)
        if (p[0] == '/' && p[1] == '.')
            return 0;
    return 1;
}

/* Pushes nil and "spacer.files.read: PATH: WHY"; returns 2. */
static int fail(lua_State *L, const char *path, const char *why)
{
    lua_pushnil(L);
    lua_pushfstring(L, "spacer.files.read: %s: %s", path, why);
    return 2;
}

/* Resolves path into real (PATH_MAX) and checks that scripts may read it: NULL, or why not. */
static const char *allowed(const struct sp_conf *conf, const char *path, char *real)
{
    char real_conf[PATH_MAX];

    if (realpath(path, real) == NULL)
        return strerror(errno);
    if (!under_root(real, ".") && !under_root(real, conf->scripts_dir) &&
        !under_root(real, conf->plugins_dir))
        return "outside the working, scripts and plugins directories, or hidden";
    if (conf->path != NULL && realpath(conf->path, real_conf) != NULL &&
        strcmp(real, real_conf) == 0)
        return "the configuration file is not for scripts";
    if (conf->pid_file != NULL) {
        char pid_dir[PATH_MAX];
        snprintf(pid_dir, sizeof(pid_dir), "%s", conf->pid_file);
        if (under_root(real, dirname(pid_dir)))
            return "the run-time state beside the pid file is not for scripts";
    }
    return NULL;
}

/* spacer.files.read(path[, max_bytes]) -> content | nil, err  [-1|2, +1|2, -] */
static int l_files_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, FILES_MAX_DEFAULT);
    char real[PATH_MAX];
    const char *why = allowed(sp_gen_of(L)->conf, path, real);
    struct stat st;
    luaL_Buffer b;
    size_t got = 0;
    char *dst;
    int fd;

    if (why != NULL)
        return fail(L, path, why);
    if ((fd = open(real, O_RDONLY | O_CLOEXEC)) < 0)
        return fail(L, path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(L, path, "not a regular file");
    }
    if (st.st_size > max) {
        close(fd);
        return fail(L, path, "larger than the limit");
    }
    dst = luaL_buffinitsize(L, &b, (size_t)st.st_size);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, dst + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return fail(L, path, strerror(e));
        }
        if (n == 0)
            break; /* shorter than it was: keep what is there */
        got += (size_t)n;
    }
    close(fd);
    luaL_pushresultsize(&b, got);
    return 1;
}

/* spacer.files.static(path[, max_bytes]) -> file | nil, err  [-1|2, +1|2, -]
 * A file: #file (bytes), file.etag, file.size, file:text() (a copy, as a string); a handler
 * may return it as its body. */
static int l_files_static(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, FILES_MAX_DEFAULT);
    char real[PATH_MAX];
    const char *why = allowed(sp_gen_of(L)->conf, path, real);
    struct sp_file **ud;
    sp_err err;

    if (why != NULL)
        return fail(L, path, why);
    if (max < 0)
        return fail(L, path, "larger than the limit");
    ud = lua_newuserdatauv(L, sizeof(*ud), 0);
    *ud = NULL;
    luaL_setmetatable(L, FILE_MT);
    if (sp_file_get(real, (size_t)max, ud, &err) != 0)
        return fail(L, path, err.msg);
    return 1;
}

static struct sp_file *check_file(lua_State *L)
{
    struct sp_file **ud = luaL_checkudata(L, 1, FILE_MT);

    if (*ud == NULL)
        luaL_error(L, "spacer.file: released");
    return *ud;
}

/* [-0, +0, -] */
static int l_file_gc(lua_State *L)
{
    struct sp_file **ud = luaL_checkudata(L, 1, FILE_MT);

    sp_file_unref(*ud); /* a response being written keeps its own reference */
    *ud = NULL;
    return 0;
}

/* #file  [-0, +1, -] */
static int l_file_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_file(L)->len);
    return 1;
}

/* file:text() -> the content as a string (a copy)  [-0, +1, m] */
static int l_file_text(lua_State *L)
{
    struct sp_file *f = check_file(L);

    lua_pushlstring(L, f->data, f->len);
    return 1;
}

/* file.etag, file.size, file.text  [-0, +1, -] */
static int l_file_index(lua_State *L)
{
    struct sp_file *f = check_file(L);
    const char *k = luaL_checkstring(L, 2);

    if (strcmp(k, "etag") == 0)
        lua_pushstring(L, f->etag);
    else if (strcmp(k, "size") == 0)
        lua_pushinteger(L, (lua_Integer)f->len);
    else if (strcmp(k, "text") == 0)
        lua_pushcfunction(L, l_file_text);
    else
        lua_pushnil(L);
    return 1;
}

static int l_file_tostring(lua_State *L)
{
    struct sp_file *f = check_file(L);

    lua_pushfstring(L, "spacer.file: %s (%I bytes)", f->path, (lua_Integer)f->len);
    return 1;
}

struct sp_file *sp_lua_tofile(lua_State *L, int idx)
{
    struct sp_file **ud;

    if (lua_type(L, idx) != LUA_TUSERDATA)
        return NULL; /* most bodies: a table or a string */
    ud = luaL_testudata(L, idx, FILE_MT);

    return ud != NULL ? *ud : NULL;
}

void sp_lua_open_files(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"read", l_files_read},
        {"static", l_files_static},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", l_file_gc},
        {"__len", l_file_len},
        {"__index", l_file_index},
        {"__tostring", l_file_tostring},
        {NULL, NULL},
    };

    if (luaL_newmetatable(L, FILE_MT)) {
        luaL_setfuncs(L, meta, 0);
        lua_pushliteral(L, "spacer.file");
        lua_setfield(L, -2, "__metatable"); /* scripts can neither see nor change it */
    }
    lua_pop(L, 1);

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "files");
}
