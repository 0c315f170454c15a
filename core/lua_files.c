/* lua_files.c: spacer.files — reading a file whole, for what a generation keeps in memory
 * while it loads (static assets such as a documentation page's scripts). A read blocks, so
 * the prelude allows it only while a generation loads, never in a request. Only files under
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
#include "gen.h"
#include "lua_spacer.h"

#define FILES_MAX_DEFAULT (16L * 1024 * 1024)

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

/* spacer.files.read(path[, max_bytes]) -> content | nil, err  [-1|2, +1|2, -] */
static int l_files_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, FILES_MAX_DEFAULT);
    const struct sp_conf *conf = sp_gen_of(L)->conf;
    char real[PATH_MAX], real_conf[PATH_MAX];
    struct stat st;
    luaL_Buffer b;
    size_t got = 0;
    char *dst;
    int fd;

    if (realpath(path, real) == NULL)
        return fail(L, path, strerror(errno));
    if (!under_root(real, ".") && !under_root(real, conf->scripts_dir) &&
        !under_root(real, conf->plugins_dir))
        return fail(L, path, "outside the working, scripts and plugins directories, or hidden");
    if (conf->path != NULL && realpath(conf->path, real_conf) != NULL &&
        strcmp(real, real_conf) == 0)
        return fail(L, path, "the configuration file is not for scripts");
    if (conf->pid_file != NULL) {
        char pid_dir[PATH_MAX];
        snprintf(pid_dir, sizeof(pid_dir), "%s", conf->pid_file);
        if (under_root(real, dirname(pid_dir)))
            return fail(L, path, "the run-time state beside the pid file is not for scripts");
    }
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

void sp_lua_open_files(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"read", l_files_read},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "files");
}
