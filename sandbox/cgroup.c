/*
 * cgroup.c — detection and preparation of the delegated cgroup v2 subtree, and the per-child
 * leaves (see cgroup.h for the layout and the three schemes).
 *
 * Owns: every read and write under the delegated cgroup D.
 * Invariants: the children's root is never an ancestor of a cgroup holding the spawner; a leaf
 * exists only between sandbox_cgroup_enter and sandbox_cgroup_release; every attribute is one
 * write(2) (cgroupfs parses per write).
 * Never: runs in the child; writes above D; follows symlinks; kills by pid when cgroup.kill
 * exists (pids can be reused, the cgroup cannot lie).
 */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CG_SUPERVISOR "mcpvisor-supervisor"
#define CG_CHILDREN   "mcpvisor-children"
#define CG_PATH_MAX   1024
#define CG_TEXT_MAX   4096
#define CG_RELEASE_MS 2000 /* longest sandbox_cgroup_release waits for the leaf to empty */

enum cg_scheme { CG_SCHEME_ROOT, CG_SCHEME_SIBLING, CG_SCHEME_MOVE };

static void why(struct sandbox_cgroup *cg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The reason goes into log values and `mcpvisor check`: keep it free of double quotes. */
static void why(struct sandbox_cgroup *cg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cg->why, sizeof(cg->why), fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(cg->why, sizeof(cg->why), "cgroup v2 detection failed");
    for (char *q = cg->why; *q != '\0'; q++) {
        if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
            *q = '\'';
    }
    cg->available = false;
}

/* out = a + "/" + b; -1 with ENAMETOOLONG when it does not fit. */
static int join(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static bool is_cgroup2(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

/* Reads a whole small file into buf (NUL-terminated). -1 with errno; EFBIG when it is larger. */
static int read_text(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1)
        return -1;
    size_t off = 0;
    for (;;) {
        if (off == len - 1) {
            (void)close(fd);
            errno = EFBIG;
            return -1;
        }
        ssize_t n = read(fd, buf + off, len - 1 - off);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            int saved = errno;
            (void)close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    (void)close(fd);
    buf[off] = '\0';
    return 0;
}

static int read_attr(const char *dir, const char *name, char *buf, size_t len)
{
    char p[CG_PATH_MAX];
    if (join(p, sizeof(p), dir, name) == -1)
        return -1;
    return read_text(p, buf, len);
}

/*
 * Writes value to dir/name in one write(2). plain: dir is not on cgroupfs (a test's fake tree),
 * where the file is created or truncated like an ordinary file.
 */
static int write_attr(const char *dir, const char *name, const char *value, bool plain)
{
    char p[CG_PATH_MAX];
    if (join(p, sizeof(p), dir, name) == -1)
        return -1;
    int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (plain ? O_CREAT | O_TRUNC : 0);
    int fd = open(p, flags, 0644);
    if (fd == -1)
        return -1;
    size_t len = strlen(value);
    ssize_t n;
    do {
        n = write(fd, value, len);
    } while (n == -1 && errno == EINTR);
    int saved = errno;
    (void)close(fd);
    if (n == -1) {
        errno = saved;
        return -1;
    }
    if ((size_t)n != len) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* Whether the whitespace-separated list holds word. */
static bool has_word(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\n' || *p == '\t')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ' ' && *p != '\n' && *p != '\t')
            p++;
        if ((size_t)(p - start) == wl && memcmp(start, word, wl) == 0)
            return true;
    }
    return false;
}

/* systemd marks the cgroups it delegates (Delegate=yes) with trusted.delegate=1 (and, for
 * readers without CAP_SYS_ADMIN, user.delegate=1). */
static bool delegation_marked(const char *dir)
{
    static const char *const names[] = {"trusted.delegate", "user.delegate"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char v[8];
        ssize_t n = getxattr(dir, names[i], v, sizeof(v));
        if (n == 1 && v[0] == '1')
            return true;
    }
    return false;
}

static bool can_write(const char *dir, const char *name)
{
    char p[CG_PATH_MAX];
    if (name == NULL)
        return faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) == 0;
    return join(p, sizeof(p), dir, name) == 0 && faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) == 0;
}

/* The cgroup v2 delegation model: the directory, cgroup.procs and cgroup.subtree_control. */
static bool writable(const char *dir)
{
    return can_write(dir, NULL) && can_write(dir, "cgroup.procs") &&
           can_write(dir, "cgroup.subtree_control");
}

static bool exists(const char *dir, const char *name)
{
    char p[CG_PATH_MAX];
    return join(p, sizeof(p), dir, name) == 0 && faccessat(AT_FDCWD, p, F_OK, AT_EACCESS) == 0;
}

/* Our cgroup v2 path ("0::/a/b" in /proc/self/cgroup) into rel. -1 when there is none. */
static int own_cgroup(const char *file, char *rel, size_t len)
{
    char buf[CG_TEXT_MAX];
    if (read_text(file, buf, sizeof(buf)) == -1)
        return -1;
    for (char *line = buf; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t ll = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (ll > 3 && memcmp(line, "0::", 3) == 0 && line[3] == '/') {
            if (ll - 3 >= len) {
                errno = ENAMETOOLONG;
                return -1;
            }
            memcpy(rel, line + 3, ll - 3);
            rel[ll - 3] = '\0';
            return 0;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    errno = ENOENT;
    return -1;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

/* Enables the controllers we use in dir's cgroup.subtree_control (those not yet enabled). */
static int enable_controllers(const char *dir, bool memory, bool pids, bool plain)
{
    char cur[512];
    if (read_attr(dir, "cgroup.subtree_control", cur, sizeof(cur)) == -1) {
        if (!plain || errno != ENOENT)
            return -1;
        cur[0] = '\0';
    }
    bool add_memory = memory && !has_word(cur, "memory");
    bool add_pids = pids && !has_word(cur, "pids");
    if (!add_memory && !add_pids)
        return 0; /* already enabled, or nothing to enable */
    const char *want = add_memory && add_pids ? "+memory +pids" : add_memory ? "+memory" : "+pids";
    return write_attr(dir, "cgroup.subtree_control", want, plain);
}

void sandbox_cgroup_detect(struct sandbox_cgroup *cg)
{
    static const char *const mounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
        if (is_cgroup2(mounts[i])) {
            sandbox_cgroup_detect_at(cg, mounts[i], "/proc/self/cgroup");
            return;
        }
    }
    sandbox_cgroup_detect_at(cg, NULL, "/proc/self/cgroup");
}

void sandbox_cgroup_detect_at(struct sandbox_cgroup *cg, const char *mount,
                              const char *self_cgroup_file)
{
    memset(cg, 0, sizeof(*cg));
    if (mount == NULL || mount[0] != '/') {
        why(cg, "no cgroup v2 hierarchy is mounted (neither /sys/fs/cgroup nor "
                "/sys/fs/cgroup/unified is cgroup2)");
        return;
    }
    char text[CG_TEXT_MAX];
    if (read_attr(mount, "cgroup.controllers", text, sizeof(text)) == -1) {
        why(cg, "no cgroup v2 hierarchy at %s (cgroup.controllers: %s)", mount, strerror(errno));
        return;
    }

    char rel[512];
    if (own_cgroup(self_cgroup_file, rel, sizeof(rel)) == -1) {
        why(cg, "%s has no cgroup v2 line (0::/...): %s", self_cgroup_file, strerror(errno));
        return;
    }
    bool at_top = strcmp(rel, "/") == 0;
    char own[CG_PATH_MAX], parent[CG_PATH_MAX];
    int n = snprintf(own, sizeof(own), "%s%s", mount, at_top ? "" : rel);
    if (n < 0 || (size_t)n >= sizeof(own)) {
        why(cg, "our cgroup path %s is too long", rel);
        return;
    }
    struct stat st;
    if (stat(own, &st) == -1 || !S_ISDIR(st.st_mode)) {
        why(cg, "our cgroup %s is not visible under %s", rel, mount);
        return;
    }
    memcpy(parent, own, (size_t)n + 1);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && !at_top)
        *slash = '\0';

    /* Pick D (see cgroup.h). */
    enum cg_scheme scheme;
    const char *d;
    bool delegated = true;
    if (at_top && !exists(own, "cgroup.type")) {
        scheme = CG_SCHEME_ROOT; /* the real root: exempt from "no internal processes" */
        d = own;
    } else if (!at_top && delegation_marked(parent)) {
        scheme = CG_SCHEME_SIBLING;
        d = parent;
    } else if (delegation_marked(own) || at_top || (geteuid() != 0 && writable(own))) {
        scheme = CG_SCHEME_MOVE; /* at_top here: our cgroup namespace's root (a container) */
        d = own;
    } else {
        scheme = CG_SCHEME_MOVE;
        d = own;
        delegated = false;
    }

    if (read_attr(d, "cgroup.controllers", text, sizeof(text)) == -1) {
        why(cg, "cannot read %s/cgroup.controllers: %s", d, strerror(errno));
        return;
    }
    text[strcspn(text, "\n")] = '\0';
    cg->memory = has_word(text, "memory");
    cg->pids = has_word(text, "pids");
    cg->cpu = has_word(text, "cpu");

    /* Missing controllers first: that needs a host change, delegation alone would not do. */
    if (!cg->memory || !cg->pids) {
        bool hybrid = strcmp(mount, "/sys/fs/cgroup/unified") == 0;
        why(cg, "cgroup v2 at %s has no %s%s%s controller for %s (cgroup.controllers: %s)%s", mount,
            cg->memory ? "" : "memory", !cg->memory && !cg->pids ? ", " : "",
            cg->pids ? "" : "pids", d == own ? rel : "its parent", text[0] != '\0' ? text : "none",
            hybrid ? "; this hybrid host binds them to cgroup v1" : "");
        return;
    }

    if (!delegated) {
        why(cg,
            "cgroup %s is not delegated to us (no trusted.delegate mark from systemd "
            "Delegate=yes%s): its cgroup.subtree_control is not ours to write",
            rel, geteuid() != 0 ? ", files not writable by our uid" : "");
        return;
    }
    if (!writable(d)) {
        why(cg, "cgroup.subtree_control or cgroup.procs of %s is not writable (%s)", d,
            strerror(errno));
        return;
    }

    /* Prepare: from here on, side effects. */
    bool plain = !is_cgroup2(d);
    char path[CG_PATH_MAX];
    const char *step = "";
    if (scheme == CG_SCHEME_MOVE) {
        char pid[24];
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        step = "moving the spawner to " CG_SUPERVISOR;
        if (join(path, sizeof(path), d, CG_SUPERVISOR) == -1 || make_dir(path) == -1 ||
            write_attr(path, "cgroup.procs", pid, plain) == -1)
            goto fail;
    }
    step = "enabling memory and pids";
    if (enable_controllers(d, true, true, plain) == -1)
        goto fail;
    step = "creating " CG_CHILDREN;
    if (join(cg->root, sizeof(cg->root), d, CG_CHILDREN) == -1 || make_dir(cg->root) == -1)
        goto fail;
    step = "enabling memory and pids in " CG_CHILDREN;
    if (enable_controllers(cg->root, true, true, plain) == -1)
        goto fail;
    cg->available = true;
    cg->why[0] = '\0';
    return;

fail:;
    int err = errno;
    why(cg, "cannot prepare %s: %s: %s%s", d, step, strerror(err),
        err == EBUSY ? " (other processes are still in it)" : "");
    cg->root[0] = '\0';
}

/* A single path component we create: not empty, no '/', no leading '.', no control bytes. */
static bool valid_component(const char *s)
{
    if (s == NULL || s[0] == '\0' || s[0] == '.' || strlen(s) > 200)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

int sandbox_cgroup_enter(const struct sandbox_cgroup *cg, const char *tenant, const char *server,
                         uint64_t id, uint64_t memory_mb, uint64_t pids_max, pid_t pid,
                         char *path_out, size_t outlen)
{
    if (cg == NULL || !cg->available) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (!valid_component(tenant) || !valid_component(server) || pid <= 0 || path_out == NULL ||
        outlen == 0 || memory_mb > UINT64_MAX / 1048576) {
        errno = EINVAL;
        return -1;
    }
    if ((memory_mb > 0 && !cg->memory) || (pids_max > 0 && !cg->pids)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    path_out[0] = '\0';

    char tdir[CG_PATH_MAX], leaf[CG_PATH_MAX];
    if (join(tdir, sizeof(tdir), cg->root, tenant) == -1)
        return -1;
    int n = snprintf(leaf, sizeof(leaf), "%s/%s-%" PRIu64, tdir, server, id);
    if (n < 0 || (size_t)n >= sizeof(leaf) || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (make_dir(tdir) == -1)
        return -1;
    bool plain = !is_cgroup2(tdir);
    if (enable_controllers(tdir, cg->memory, cg->pids, plain) == -1)
        return -1;

    if (mkdir(leaf, 0755) == -1) {
        /* A leaf left by an earlier run with the same id: reuse the name only if it is empty. */
        if (errno != EEXIST || rmdir(leaf) == -1 || mkdir(leaf, 0755) == -1)
            return -1;
    }

    char v[32];
    const char *file = "";
    if (memory_mb > 0) {
        file = "memory.max";
        snprintf(v, sizeof(v), "%" PRIu64, memory_mb * 1048576);
        if (write_attr(leaf, file, v, plain) == -1)
            goto fail;
        /* Without swap accounting (swapaccount=0) the file does not exist: memory.max is then
         * the only bound, and the kernel cannot charge swap to the server. Say so. */
        file = "memory.swap.max";
        if (write_attr(leaf, file, "0", plain) == -1) {
            if (errno != ENOENT)
                goto fail;
            char ql[CG_PATH_MAX + 8];
            log_warn("cgroup_no_swap_limit leaf=%s", log_quote_str(ql, sizeof(ql), leaf));
        }
    }
    if (pids_max > 0) {
        file = "pids.max";
        snprintf(v, sizeof(v), "%" PRIu64, pids_max);
        if (write_attr(leaf, file, v, plain) == -1)
            goto fail;
    }
    if (cg->memory) {
        file = "memory.oom.group";
        if (write_attr(leaf, file, "1", plain) == -1)
            goto fail;
    }
    file = "cgroup.procs";
    snprintf(v, sizeof(v), "%ld", (long)pid);
    if (write_attr(leaf, file, v, plain) == -1)
        goto fail;
    memcpy(path_out, leaf, (size_t)n + 1);
    return 0;

fail:;
    int err = errno;
    char ql[CG_PATH_MAX + 8];
    log_warn("cgroup_enter_failed leaf=%s file=%s errno=%d", log_quote_str(ql, sizeof(ql), leaf),
             file, err);
    (void)rmdir(leaf); /* empty again: the pid is written last */
    errno = err;
    return -1;
}

/* Kernels before 5.14: SIGKILL every pid listed in cgroup.procs. */
static void kill_listed(const char *leaf)
{
    char buf[CG_TEXT_MAX];
    char p[CG_PATH_MAX];
    if (join(p, sizeof(p), leaf, "cgroup.procs") == -1)
        return;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1)
        return;
    long pid = 0;
    bool in_number = false;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                if (pid < 100000000)
                    pid = pid * 10 + (buf[i] - '0');
                in_number = true;
            } else {
                if (in_number && pid > 1)
                    (void)kill((pid_t)pid, SIGKILL);
                pid = 0;
                in_number = false;
            }
        }
    }
    if (in_number && pid > 1)
        (void)kill((pid_t)pid, SIGKILL);
    (void)close(fd);
}

/* 1 populated, 0 not (or no cgroup.events: a fake tree or a leaf already gone), -1 on error. */
static int populated(int fd)
{
    if (fd == -1)
        return 0;
    char buf[256];
    if (lseek(fd, 0, SEEK_SET) == -1)
        return -1;
    ssize_t r = read(fd, buf, sizeof(buf) - 1);
    if (r == -1)
        return -1;
    buf[r] = '\0';
    const char *p = strstr(buf, "populated ");
    if (p == NULL)
        return 0;
    return p[10] == '1' ? 1 : 0;
}

void sandbox_cgroup_release(const char *path)
{
    if (path == NULL || path[0] != '/')
        return;
    bool plain = !is_cgroup2(path);
    char qp[CG_PATH_MAX + 8];
    log_quote_str(qp, sizeof(qp), path);
    /* Never kill pids read from a plain file (a test's fake tree). */
    bool have_kill = write_attr(path, "cgroup.kill", "1", plain) == 0 || plain;
    if (!have_kill) {
        if (errno != ENOENT)
            log_warn("cgroup_kill_failed leaf=%s errno=%d", qp, errno);
        kill_listed(path);
    }

    char ev[CG_PATH_MAX];
    int fd = -1;
    if (join(ev, sizeof(ev), path, "cgroup.events") == 0)
        fd = open(ev, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int64_t deadline = util_mono_ms() + CG_RELEASE_MS;
    for (;;) {
        int pop = populated(fd);
        if (pop <= 0)
            break;
        int64_t left = deadline - util_mono_ms();
        if (left <= 0) {
            log_warn("cgroup_still_populated leaf=%s", qp);
            break;
        }
        /* cgroupfs wakes POLLPRI when cgroup.events changes; the cap re-kills listed pids on
         * old kernels (a fork may have raced the first pass). */
        struct pollfd pfd = {.fd = fd, .events = POLLPRI};
        (void)poll(&pfd, 1, left < 100 ? (int)left : 100);
        if (!have_kill)
            kill_listed(path);
    }
    if (fd != -1)
        (void)close(fd);

    while (rmdir(path) == -1) {
        if (errno == ENOENT)
            return;
        if (errno != EBUSY || util_mono_ms() >= deadline) {
            if (!plain) /* a fake tree's leaf holds plain files; the test removes them */
                log_warn("cgroup_rmdir_failed leaf=%s errno=%d", qp, errno);
            return;
        }
        (void)poll(NULL, 0, 10);
    }
}
