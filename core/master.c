/* master.c: the master process. It binds one listener that every worker accepts from (they
 * spread connections evenly between them: sp_http_balance()) and keeps a copy open, so while
 * all workers are down connections queue for their replacements instead of being reset. It
 * forks the workers, restarts a crashed one with backoff, forwards SIGHUP,
 * answers reload requests on a Unix control socket (from `spacer reload` and the admin
 * endpoint, with every worker's outcome), watches the scripts in development, and on
 * SIGTERM/SIGINT drains the workers and exits 0. No libevent here: one poll() loop over a
 * signalfd, the control socket and inotify. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "cache.h"
#include "conf.h"
#include "gen.h"
#include "log.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "worker.h"

struct slot {
    pid_t pid;
    int fd;              /* the listener, this slot's copy */
    uint64_t started_us; /* to tell a crash loop from a rare crash */
    int backoff_ms;
    uint64_t restart_at_us; /* 0: not waiting */
};

struct master {
    const struct sp_conf *conf; /* the settings new workers start with: the start-up ones,
                                 * then the last good reload's (live) */
    struct sp_conf *live; /* owned: a reload's settings (core ones as at start-up), or NULL */
    struct slot *slots;
    int n;
    int stopping;
    int sigfd, ctlfd, inofd;
    int conf_wd;           /* inotify: spacer.conf's directory, -1 when not watched */
    const char *conf_name; /* spacer.conf's name in it */
    uint64_t watch_due_us;
    char ctl_path[512];
};

void sp_master_ctl_path(const struct sp_conf *conf, char *buf, size_t cap)
{
    const char *pid = conf->pid_file;
    size_t n = strlen(pid);

    if (n > 4 && strcmp(pid + n - 4, ".pid") == 0)
        snprintf(buf, cap, "%.*s.sock", (int)(n - 4), pid);
    else
        snprintf(buf, cap, "%s.sock", pid);
}

static int listen_socket(const struct sp_conf *c, sp_err *err)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) {
        sp_err_set(err, "server.host: \"%s\" is not an IPv4 address", c->host);
        goto fail;
    }
    if (fd < 0)
        goto sysfail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto sysfail;
    if (listen(fd, 4096) != 0)
        goto sysfail;
    return fd;
sysfail:
    sp_err_set(err, "cannot listen on %s:%d: %s", c->host, c->port, strerror(errno));
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

static void spawn(struct master *m, int i)
{
    struct slot *s = &m->slots[i];
    pid_t pid = fork();

    if (pid < 0) {
        sp_log(SP_LOG_ERROR, "cannot fork worker %d: %s", i, strerror(errno));
        s->restart_at_us = sp_now_us() + 1000000;
        return;
    }
    if (pid == 0) {
        /* SIGHUP stays blocked until the worker listens for it (sp_worker_run): a reload
         * during the worker's start would otherwise end it, and it would restart with
         * whatever the scripts are by then. */
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        sigprocmask(SIG_SETMASK, &hup, NULL);
        close(m->sigfd);
        if (m->ctlfd >= 0)
            close(m->ctlfd);
        if (m->inofd >= 0)
            close(m->inofd);
        for (int k = 0; k < m->n; k++)
            if (k != i)
                close(m->slots[k].fd);
        sp_log_init(m->conf->log_level, "worker");
        /* The worker takes a duplicate: the master's copy keeps the queue across a crash. */
        int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
        close(s->fd);
        int rc = sp_worker_run(m->conf, i, fd, -1, m->ctl_path);
#ifdef SP_SANITIZE
        /* The sanitizer build leaves through exit() so LeakSanitizer checks the worker too;
         * the worker has freed what it owns, the slots are the master's copy. */
        free(m->slots);
        exit(rc);
#else
        _exit(rc); /* the master's exit handlers and stdio buffers are not the worker's */
#endif
    }
    s->pid = pid;
    s->started_us = sp_now_us();
    s->restart_at_us = 0;
    struct sp_worker_info *wi = metrics_worker(i);
    if (wi) {
        wi->pid = pid;
        wi->alive = 1;
    }
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < m->n; i++) {
            struct slot *s = &m->slots[i];
            if (s->pid != pid)
                continue;
            s->pid = 0;
            struct sp_worker_info *wi = metrics_worker(i);
            if (wi)
                wi->alive = 0;
            if (metrics_conns() != NULL && i < metrics_nworkers())
                metrics_conns()[i] = -1; /* its connections are gone: not one to leave new ones to */
            if (m->stopping) {
                sp_log(SP_LOG_INFO, "worker %d (pid %d) exited", i, (int)pid);
                break;
            }
            /* A worker that ran for a while restarts at once; a crash loop backs off. */
            uint64_t ran = sp_now_us() - s->started_us;
            s->backoff_ms = ran > 10000000 ? 0 : (s->backoff_ms ? s->backoff_ms * 2 : 100);
            if (s->backoff_ms > 10000)
                s->backoff_ms = 10000;
            s->restart_at_us = sp_now_us() + (uint64_t)s->backoff_ms * 1000 + 1;
            if (WIFSIGNALED(status))
                sp_log(SP_LOG_ERROR, "worker %d (pid %d) killed by signal %d; restarting in %d ms",
                       i, (int)pid, WTERMSIG(status), s->backoff_ms);
            else
                sp_log(SP_LOG_ERROR, "worker %d (pid %d) exited with status %d; restarting in %d ms",
                       i, (int)pid, WEXITSTATUS(status), s->backoff_ms);
            metrics_restart();
            break;
        }
    }
}

static void signal_all(struct master *m, int sig)
{
    for (int i = 0; i < m->n; i++)
        if (m->slots[i].pid > 0)
            kill(m->slots[i].pid, sig);
}

static int alive(struct master *m)
{
    int n = 0;

    for (int i = 0; i < m->n; i++)
        n += m->slots[i].pid > 0;
    return n;
}

/* Appends changed ("a.b, c.d") as a JSON array of strings. */
static void add_key_list(struct sp_buf *out, const char *changed)
{
    sp_buf_addc(out, '[');
    for (const char *p = changed; *p;) {
        size_t n = strcspn(p, ",");
        sp_buf_printf(out, "%s\"%.*s\"", p == changed ? "" : ",", (int)n, p);
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    sp_buf_addc(out, ']');
}

/* Reloads every worker and waits for each outcome; writes the JSON answer. spacer.conf is read
 * first: a file that no longer parses fails the reload before any worker is asked. */
static void do_reload(struct master *m, struct sp_buf *out)
{
    uint64_t seq[SP_MAX_WORKERS] = {0}, deadline = sp_now_us() + 15000000;
    int ok = 1, pending;
    uint64_t gen = 0;
    time_t loaded = 0;
    struct sp_conf *next = NULL;
    char changed[512] = "";
    sp_err conf_err;
    const char *conf_error = NULL;

    if (sp_conf_reread(m->conf, &next, changed, sizeof(changed), &conf_err) != 0) {
        conf_error = conf_err.msg;
        sp_log(SP_LOG_ERROR, "reload: %s", conf_error);
    } else if (changed[0] != '\0') {
        sp_log(SP_LOG_WARN, "reload: %s changed in %s; the server keeps its start-up value(s) "
               "until a restart", changed, m->conf->path);
    }
    for (int i = 0; i < m->n; i++) {
        struct sp_worker_info *wi = metrics_worker(i);
        seq[i] = wi ? wi->reload_seq : 0;
        if (m->slots[i].pid > 0 && conf_error == NULL)
            kill(m->slots[i].pid, SIGHUP);
    }
    do {
        pending = 0;
        for (int i = 0; i < m->n; i++) {
            struct sp_worker_info *wi = metrics_worker(i);
            if (m->slots[i].pid > 0 && wi && wi->reload_seq == seq[i] && conf_error == NULL)
                pending++;
        }
        if (pending)
            usleep(2000);
    } while (pending && sp_now_us() < deadline);

    sp_buf_adds(out, "{\"workers\":[");
    struct sp_buf errs = {0};
    for (int i = 0; i < m->n; i++) {
        struct sp_worker_info *wi = metrics_worker(i);
        int done = wi && wi->reload_seq != seq[i];
        int wok = done && wi->reload_ok && conf_error == NULL;
        const char *e = conf_error ? conf_error
                        : !wi      ? "no worker"
                        : !done    ? "no answer (worker busy or restarting)"
                                   : wi->last_error;
        ok &= wok;
        if (wi && wi->generation > gen)
            gen = wi->generation, loaded = wi->loaded_at;
        sp_buf_printf(out, "%s{\"pid\":%d,\"generation\":%llu,\"ok\":%s,\"error\":", i ? "," : "",
                      wi ? (int)wi->pid : 0, wi ? (unsigned long long)wi->generation : 0ULL,
                      wok ? "true" : "false");
        if (wok) {
            sp_buf_adds(out, "null}");
        } else {
            struct sp_buf tmp = {0};
            size_t len = 0;
            char esc[1024];
            sp_json_escape(esc, sizeof(esc), &len, e);
            esc[len] = '\0';
            sp_buf_printf(out, "\"%s\"}", esc);
            if (!strstr(errs.data ? errs.data : "", esc))
                sp_buf_printf(&errs, "%s\"%s\"", errs.len ? "," : "", esc);
            sp_buf_free(&tmp);
        }
    }
    char when[64];
    struct tm tm;
    gmtime_r(&loaded, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sp_buf_printf(out, "],\"ok\":%s,\"generation\":%llu,\"loaded_at\":\"%s\",\"errors\":[%s],"
                  "\"restart_required\":", ok ? "true" : "false", (unsigned long long)gen, when,
                  errs.data ? errs.data : "");
    add_key_list(out, changed);
    sp_buf_adds(out, "}\n");
    sp_buf_free(&errs);
    if (ok) { /* a worker restarted from now on starts with these settings */
        struct sp_conf *old = m->live;
        m->conf = m->live = next;
        sp_conf_free(old);
    } else {
        sp_conf_free(next);
    }
    sp_log(ok ? SP_LOG_INFO : SP_LOG_ERROR, "reload %s (generation %llu)",
           ok ? "succeeded" : "failed", (unsigned long long)gen);
}

static int ctl_listen(struct master *m, sp_err *err)
{
    struct sockaddr_un sa = {0};
    int fd;

    sp_master_ctl_path(m->conf, m->ctl_path, sizeof(m->ctl_path));
    if (strlen(m->ctl_path) >= sizeof(sa.sun_path)) {
        sp_err_set(err, "control socket path too long: %s", m->ctl_path);
        return -1;
    }
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, m->ctl_path, strlen(m->ctl_path) + 1);
    unlink(m->ctl_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
        sp_err_set(err, "control socket %s: %s", m->ctl_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    chmod(m->ctl_path, 0600);
    return fd;
}

/* One request per connection: "reload\n" -> the JSON outcome. Blocking but short. */
static void ctl_serve(struct master *m)
{
    int c = accept4(m->ctlfd, NULL, NULL, SOCK_CLOEXEC);
    char line[64] = "";
    struct sp_buf out = {0};
    struct timeval tv = {2, 0};
    ssize_t n;

    if (c < 0)
        return;
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    n = read(c, line, sizeof(line) - 1);
    if (n > 0 && strncmp(line, "reload", 6) == 0)
        do_reload(m, &out);
    else
        sp_buf_adds(&out, "{\"ok\":false,\"errors\":[\"unknown command\"]}\n");
    for (size_t off = 0; off < out.len;) {
        ssize_t w = write(c, out.data + off, out.len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    sp_buf_free(&out);
    close(c);
}

int sp_master_request_reload(const char *ctl_path, char **out, sp_err *err)
{
    struct sockaddr_un sa = {0};
    struct sp_buf b = {0};
    char chunk[4096];
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sun_family = AF_UNIX;
    if (strlen(ctl_path) >= sizeof(sa.sun_path)) {
        sp_err_set(err, "control socket path too long: %s", ctl_path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    memcpy(sa.sun_path, ctl_path, strlen(ctl_path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        sp_err_set(err, "cannot reach the server at %s: %s (is it running?)", ctl_path,
                   strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (write(fd, "reload\n", 7) != 7) {
        sp_err_set(err, "cannot talk to the server: %s", strerror(errno));
        close(fd);
        return -1;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        sp_buf_add(&b, chunk, (size_t)n);
    close(fd);
    if (b.len == 0) {
        sp_err_set(err, "the server closed the control connection without an answer");
        return -1;
    }
    *out = b.data;
    return 0;
}

static void watch_dir(int fd, const char *dir)
{
    char path[1024];
    FILE *p;

    /* Every directory below dir: scripts live a few levels deep at most. */
    snprintf(path, sizeof(path), "find '%s' -type d 2>/dev/null", dir);
    if ((p = popen(path, "r")) == NULL)
        return;
    while (fgets(path, sizeof(path), p) != NULL) {
        path[strcspn(path, "\n")] = '\0';
        inotify_add_watch(fd, path, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE);
    }
    pclose(p);
}

static int write_pid_file(const char *path, sp_err *err)
{
    FILE *f;
    char dir[512], *slash;

    snprintf(dir, sizeof(dir), "%s", path);
    if ((slash = strrchr(dir, '/')) != NULL) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
    if ((f = fopen(path, "w")) == NULL) {
        sp_err_set(err, "pid file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return 0;
}

/* Every connection is a descriptor: take the hard limit (the workers inherit it). */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int sp_master_run(const struct sp_conf *conf)
{
    struct master m = {.conf = conf, .sigfd = -1, .ctlfd = -1, .inofd = -1, .conf_wd = -1};
    char conf_dir[512];
    struct sp_gen *probe = NULL;
    sigset_t set;
    sp_err err;
    int rc = 1, fd;
    uint64_t kill_at = 0;

    raise_nofile();
    sp_log_init(conf->log_level, "master");
    if (conf->jwt_secret_generated)
        sp_log(SP_LOG_WARN, "no JWT secret configured: using a random one; tokens die with "
                            "this process (set JWT_SECRET_KEY or [auth] jwt_secret)");
    /* Load the scripts once here, so a broken script stops start-up with file:line. */
    if (sp_gen_load(conf, -1, sp_lua_openers, 0, &probe, &err) != 0) {
        sp_log(SP_LOG_ERROR, "scripts failed to load: %s", err.msg);
        fprintf(stderr, "spacer: %s\n", err.msg);
        return 1;
    }
    sp_gen_unref(probe);
    /* One listener for all workers (it fails if anything, another spacer, has the port). */
    if ((fd = listen_socket(conf, &err)) < 0) {
        fprintf(stderr, "spacer: %s\n", err.msg);
        return 1;
    }
    m.n = conf->workers;
    m.slots = calloc((size_t)m.n, sizeof(*m.slots));
    if (metrics_init(m.n, &err) != 0 || sp_cache_shared_init(&err) != 0) {
        close(fd);
        goto done;
    }
    for (int i = 0; i < m.n; i++)
        if ((m.slots[i].fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            fprintf(stderr, "spacer: cannot share the listener: %s\n", strerror(errno));
            close(fd);
            goto done;
        }
    close(fd);
    if (write_pid_file(conf->pid_file, &err) != 0 || (m.ctlfd = ctl_listen(&m, &err)) < 0) {
        fprintf(stderr, "spacer: %s\n", err.msg);
        goto done;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    m.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (conf->reload_watch && (m.inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) >= 0) {
        watch_dir(m.inofd, conf->scripts_dir);
        watch_dir(m.inofd, conf->plugins_dir);
        if (strcmp(conf->path, "defaults") != 0) { /* spacer.conf too, by its name */
            const char *slash = strrchr(conf->path, '/');
            snprintf(conf_dir, sizeof(conf_dir), "%.*s", slash ? (int)(slash - conf->path) : 1,
                     slash ? conf->path : ".");
            if (conf_dir[0] == '\0')
                snprintf(conf_dir, sizeof(conf_dir), "/");
            m.conf_name = slash ? slash + 1 : conf->path;
            m.conf_wd = inotify_add_watch(m.inofd, conf_dir,
                                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MASK_ADD);
        }
    }
    sp_log(SP_LOG_INFO, "spacer %s listening on http://%s:%d with %d worker(s)%s", SP_VERSION,
           conf->host, conf->port, m.n, conf->reload_watch ? ", reloading on file changes" : "");
    for (int i = 0; i < m.n; i++)
        spawn(&m, i);

    for (;;) {
        struct pollfd pfd[3] = {{m.sigfd, POLLIN, 0}, {m.ctlfd, POLLIN, 0}, {m.inofd, POLLIN, 0}};
        uint64_t now = sp_now_us(), next = now + 1000000;
        struct signalfd_siginfo si;

        if (m.stopping && alive(&m) == 0)
            break;
        for (int i = 0; i < m.n; i++)
            if (m.slots[i].restart_at_us && m.slots[i].restart_at_us < next)
                next = m.slots[i].restart_at_us;
        if (m.watch_due_us && m.watch_due_us < next)
            next = m.watch_due_us;
        poll(pfd, m.inofd >= 0 ? 3 : 2, next > now ? (int)((next - now) / 1000) + 1 : 0);

        while (read(m.sigfd, &si, sizeof(si)) == sizeof(si)) {
            switch (si.ssi_signo) {
            case SIGCHLD: reap(&m); break;
            case SIGHUP:
                if (!m.stopping) {
                    struct sp_buf out = {0};
                    do_reload(&m, &out);
                    sp_buf_free(&out);
                }
                break;
            default:
                if (!m.stopping) {
                    sp_log(SP_LOG_INFO, "shutting down: draining %d worker(s)", alive(&m));
                    m.stopping = 1;
                    kill_at = sp_now_us() + (uint64_t)conf->shutdown_timeout_ms * 1000 + 3000000;
                    signal_all(&m, SIGTERM);
                }
            }
        }
        if (pfd[1].revents & POLLIN)
            ctl_serve(&m);
        if (m.inofd >= 0 && (pfd[2].revents & POLLIN)) {
            char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
            ssize_t len;
            int changed = 0;
            while ((len = read(m.inofd, buf, sizeof(buf))) > 0) {
                const struct inotify_event *ev;
                for (char *p = buf; p < buf + len; p += sizeof(*ev) + ev->len) {
                    ev = (const struct inotify_event *)(void *)p;
                    /* In spacer.conf's directory only spacer.conf counts. */
                    if (ev->wd != m.conf_wd || (ev->len && strcmp(ev->name, m.conf_name) == 0))
                        changed = 1;
                }
            }
            if (changed)
                m.watch_due_us = sp_now_us() + 200000; /* debounce editors' bursts of writes */
        }
        now = sp_now_us();
        if (m.watch_due_us && now >= m.watch_due_us && !m.stopping) {
            struct sp_buf out = {0};
            m.watch_due_us = 0;
            sp_log(SP_LOG_INFO, "scripts or spacer.conf changed on disk: reloading");
            do_reload(&m, &out);
            sp_buf_free(&out);
        }
        for (int i = 0; i < m.n && !m.stopping; i++)
            if (m.slots[i].restart_at_us && now >= m.slots[i].restart_at_us)
                spawn(&m, i);
        if (m.stopping && kill_at && now > kill_at) {
            sp_log(SP_LOG_WARN, "workers did not drain in time: killing them");
            signal_all(&m, SIGKILL);
            kill_at = 0;
        }
    }
    sp_log(SP_LOG_INFO, "stopped");
    rc = 0;
done:
    for (int i = 0; m.slots && i < m.n; i++)
        if (m.slots[i].fd > 0)
            close(m.slots[i].fd);
    free(m.slots);
    sp_conf_free(m.live);
    if (m.ctlfd >= 0) {
        close(m.ctlfd);
        unlink(m.ctl_path);
    }
    if (m.sigfd >= 0)
        close(m.sigfd);
    if (m.inofd >= 0)
        close(m.inofd);
    unlink(conf->pid_file);
    return rc;
}
