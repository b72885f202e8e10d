/*
 * policy.c — manifests into sandbox profiles, and the machine's sandbox features.
 *
 * The filesystem view is: the runtime every dynamically linked program needs (/usr, the /lib
 * trees, merged-usr symlinks, the loader cache, TLS trust roots, time zone), the folder of the
 * command, and the manifest's read_only, read_write and tmpfs lists (tmpfs default: /tmp).
 * Nothing else of the host exists inside. Mounts are ordered parents first.
 *
 * Nesting: a mount inside a tmpfs or the bare skeleton gets its mount point created there. A
 * mount inside a bind lands on the host's own file, which the bind already shows: it must exist
 * there (nothing is ever created through a bind, read-only or not), and it is dropped when it
 * would change nothing (same kind as the bind, a symlink, or one of mcpvisor's runtime paths).
 * So read_only ["/etc"] keeps /etc whole, and read_write ["/data"] with read_only
 * ["/data/conf"] makes /data/conf read-only. Every rule is applied here, before any spawn, so a
 * manifest that `mcpvisor check` accepts also spawns.
 */
#include "policy.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "log.h"

static const char *const runtime_paths[] = {
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/mime.types",
};

static const char *const host_network_paths[] = {"/etc/resolv.conf", "/etc/hosts",
                                                 "/etc/nsswitch.conf", "/etc/gai.conf"};

static int userns_child(void *arg)
{
    (void)arg;
    _exit(0);
}

void sandbox_features_probe(struct sandbox_features *f)
{
    memset(f, 0, sizeof(*f));
    f->root = geteuid() == 0;
    f->cap_last_cap = sandbox_cap_last_cap();
    f->landlock_abi = sandbox_landlock_abi();
    sandbox_cgroup_detect(&f->cgroup);
    if (!f->root) {
        static char stack[64 * 1024];
        pid_t p = clone(userns_child, stack + sizeof(stack), CLONE_NEWUSER | SIGCHLD, NULL);
        if (p > 0) {
            int st;
            f->userns = waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
    }
    snprintf(f->newroot, sizeof(f->newroot), "/tmp/.mcpvisor-root.XXXXXX");
    if (mkdtemp(f->newroot) == NULL)
        f->newroot[0] = '\0';
}

void sandbox_features_cleanup(struct sandbox_features *f)
{
    if (f->newroot[0] != '\0')
        rmdir(f->newroot);
}

void sandbox_features_log(const struct sandbox_features *f)
{
    log_info("sandbox mode=%s namespaces=mount,pid,ipc,uts,cgroup,net capabilities=dropped "
             "no_new_privs=1 seccomp=1 landlock_abi=%d cgroup=%s",
             f->root     ? "root"
             : f->userns ? "userns"
                         : "none",
             f->landlock_abi, f->cgroup.available ? f->cgroup.root : "unavailable");
    if (f->landlock_abi == 0)
        log_warn("sandbox_landlock_unavailable note=\"the kernel has no Landlock: filesystem "
                 "confinement rests on the mount namespace alone\"");
    if (!f->cgroup.available)
        log_warn("sandbox_cgroup_unavailable reason=\"%s\" note=\"memory_mb is not enforced; "
                 "processes are bounded by RLIMIT_NPROC only\"",
                 f->cgroup.why);
}

void sandbox_missing(const struct sandbox_features *f, const struct config_manifest *m, char *out,
                     size_t outlen)
{
    size_t pos = 0;
    out[0] = '\0';
#define MISSING(cond, what)                                                                        \
    if (cond) {                                                                                    \
        int w = snprintf(out + pos, outlen - pos, "%s%s", pos > 0 ? ", " : "", what);              \
        if (w > 0 && (size_t)w < outlen - pos)                                                     \
            pos += (size_t)w;                                                                      \
    }
    MISSING(!f->root && !f->userns, "namespaces (no user namespace for an unprivileged spawner)")
    MISSING(!f->root, "per-tenant uids (needs root)")
    MISSING(m != NULL && m->sandbox.memory_mb > 0 && !f->cgroup.available,
            "memory_mb (no delegated cgroup v2 memory controller)")
#undef MISSING
}

static bool beneath(const char *path, const char *parent)
{
    size_t n = strlen(parent);
    if (strcmp(parent, "/") == 0)
        return path[0] == '/' && path[1] != '\0';
    return strncmp(path, parent, n) == 0 && path[n] == '/';
}

static bool listed(const struct sandbox_profile *p, const char *path)
{
    for (size_t i = 0; i < p->nmounts; i++)
        if (strcmp(path, p->mounts[i].path) == 0)
            return true;
    return false;
}

/* Adds one path (the first one named wins). `implicit`: mcpvisor's own choice, not the
 * manifest's; `optional`: skipped silently when this host does not have it. */
static int add_path(struct sandbox_profile *p, const char *path, enum spawn_mount_kind kind,
                    bool implicit, bool optional, char *err, size_t errlen)
{
    struct stat st;
    if (listed(p, path))
        return 0;
    /* The skeleton's own /dev and /proc are mounted over whatever is there, and a bind of the
     * host's / leaves no skeleton to build them in. */
    if (!implicit &&
        (strcmp(path, "/") == 0 || strcmp(path, "/dev") == 0 || strcmp(path, "/proc") == 0 ||
         beneath(path, "/dev") || beneath(path, "/proc"))) {
        snprintf(err, errlen,
                 "sandbox path %s: the sandbox has its own /, /dev and /proc; name the folders "
                 "the server needs instead",
                 path);
        return -1;
    }
    if (p->nmounts == SPAWN_MAX_MOUNTS) {
        snprintf(err, errlen, "more than %d sandbox paths", SPAWN_MAX_MOUNTS);
        return -1;
    }
    struct spawn_mount *m = &p->mounts[p->nmounts];
    memset(m, 0, sizeof(*m));
    if (strlen(path) >= sizeof(m->path)) {
        snprintf(err, errlen, "sandbox path too long: %s", path);
        return -1;
    }
    snprintf(m->path, sizeof(m->path), "%s", path);
    m->kind = kind;
    m->implicit = implicit;
    if (kind == SPAWN_MOUNT_TMPFS) {
        m->is_dir = true;
        p->nmounts++;
        return 0;
    }
    if (lstat(path, &st) == -1) {
        if (optional)
            return 0;
        snprintf(err, errlen, "sandbox path %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(path, m->target, sizeof(m->target) - 1);
        if (n <= 0) {
            snprintf(err, errlen, "sandbox path %s: unreadable symlink", path);
            return -1;
        }
        m->target[n] = '\0';
        m->kind = SPAWN_MOUNT_LINK;
    } else {
        m->is_dir = S_ISDIR(st.st_mode);
    }
    p->nmounts++;
    return 0;
}

static int by_length(const void *a, const void *b)
{
    const struct spawn_mount *x = a, *y = b;
    size_t lx = strlen(x->path), ly = strlen(y->path);
    return lx < ly ? -1 : lx > ly ? 1 : strcmp(x->path, y->path);
}

/* Applies the nesting rules (see the top of this file) to mounts sorted parents first. */
static int resolve_nesting(struct sandbox_profile *p, char *err, size_t errlen)
{
    static const char *const kinds[] = {"read_only", "read_write", "tmpfs", "symlink"};
    size_t kept = 0;
    for (size_t i = 0; i < p->nmounts; i++) {
        struct spawn_mount *m = &p->mounts[i];
        const struct spawn_mount *around = NULL; /* the nearest kept mount enclosing m */
        for (size_t j = 0; j < kept; j++)
            if (beneath(m->path, p->mounts[j].path) &&
                (around == NULL || strlen(p->mounts[j].path) > strlen(around->path)))
                around = &p->mounts[j];
        if (around != NULL && around->kind == SPAWN_MOUNT_LINK && m->implicit)
            continue;
        if (around != NULL && around->kind == SPAWN_MOUNT_LINK) {
            snprintf(err, errlen,
                     "sandbox path %s: %s is a symlink on this host; name the path it points to",
                     m->path, around->path);
            return -1;
        }
        if (around != NULL && around->kind != SPAWN_MOUNT_TMPFS) {
            /* Inside a bind: the host's own file is the mount point. */
            if (m->implicit || m->kind == around->kind || m->kind == SPAWN_MOUNT_LINK)
                continue;
            struct stat st;
            if (m->kind == SPAWN_MOUNT_TMPFS &&
                (lstat(m->path, &st) == -1 || !S_ISDIR(st.st_mode))) {
                snprintf(err, errlen,
                         "tmpfs %s is inside %s %s, which shows the host's files: %s must exist "
                         "there as a folder (create it, or move the tmpfs)",
                         m->path, kinds[around->kind], around->path, m->path);
                return -1;
            }
        }
        if (kept != i)
            p->mounts[kept] = *m;
        kept++;
    }
    p->nmounts = kept;
    return 0;
}

int sandbox_profile_build(const struct config_manifest *m, struct sandbox_profile *p, char *err,
                          size_t errlen)
{
    const struct config_sandbox *sb = &m->sandbox;
    char dir[PATH_MAX];
    memset(p, 0, sizeof(*p));
    p->network = sb->network;

    /* Writable and tmpfs paths first, so a runtime path beneath them is not bound twice. */
    for (size_t i = 0; i < sb->nread_write; i++) {
        if (add_path(p, sb->read_write[i], SPAWN_MOUNT_RW, false, false, err, errlen) == -1)
            return -1;
    }
    if (sb->ntmpfs == 0) {
        if (add_path(p, "/tmp", SPAWN_MOUNT_TMPFS, true, false, err, errlen) == -1)
            return -1;
    }
    for (size_t i = 0; i < sb->ntmpfs; i++) {
        if (add_path(p, sb->tmpfs[i], SPAWN_MOUNT_TMPFS, false, false, err, errlen) == -1)
            return -1;
    }
    for (size_t i = 0; i < sizeof(runtime_paths) / sizeof(runtime_paths[0]); i++) {
        if (add_path(p, runtime_paths[i], SPAWN_MOUNT_RO, true, true, err, errlen) == -1)
            return -1;
    }
    if (p->network) {
        for (size_t i = 0; i < sizeof(host_network_paths) / sizeof(host_network_paths[0]); i++) {
            if (add_path(p, host_network_paths[i], SPAWN_MOUNT_RO, true, true, err, errlen) == -1)
                return -1;
        }
    }
    for (size_t i = 0; i < sb->nread_only; i++) {
        if (add_path(p, sb->read_only[i], SPAWN_MOUNT_RO, false, false, err, errlen) == -1)
            return -1;
    }
    /* The command's own folder (its binary, or the script's interpreter is in /usr). */
    snprintf(dir, sizeof(dir), "%s", m->argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (add_path(p, dir, SPAWN_MOUNT_RO, true, false, err, errlen) == -1)
            return -1;
    }
    qsort(p->mounts, p->nmounts, sizeof(p->mounts[0]), by_length);
    if (resolve_nesting(p, err, errlen) == -1)
        return -1;

    /* Landlock mirrors the view: read (and execute) where bound read-only, everything where
     * writable; /dev for the null device and friends, /proc read-only. */
    for (size_t i = 0; i < p->nmounts && p->nlandlock + 3 < SANDBOX_LANDLOCK_MAX_RULES; i++) {
        if (p->mounts[i].kind == SPAWN_MOUNT_LINK)
            continue;
        p->landlock[p->nlandlock].path = p->mounts[i].path;
        p->landlock[p->nlandlock].write = p->mounts[i].kind != SPAWN_MOUNT_RO;
        p->nlandlock++;
    }
    p->landlock[p->nlandlock++] = (struct sandbox_landlock_rule){"/dev", true};
    p->landlock[p->nlandlock++] = (struct sandbox_landlock_rule){"/proc", false};

    p->rl.set_nofile = true;
    p->rl.nofile = sb->nofile > 0 ? sb->nofile : SANDBOX_DEFAULT_NOFILE;
    p->rl.set_nproc = true;
    p->rl.nproc = sb->nproc > 0 ? sb->nproc : SANDBOX_DEFAULT_NPROC;
    if (sb->cpu_s > 0) {
        p->rl.set_cpu = true;
        p->rl.cpu_s = sb->cpu_s;
    }
    if (sb->address_space_mb > 0) {
        p->rl.set_as = true;
        p->rl.as_bytes = (rlim_t)sb->address_space_mb << 20;
    }
    if (sandbox_seccomp_compile(sb, &p->seccomp, err, errlen) == -1)
        return -1;
    return 0;
}

void sandbox_profile_free(struct sandbox_profile *p)
{
    sandbox_seccomp_free(&p->seccomp);
}

void sandbox_profile_describe(const struct config_manifest *m, const struct sandbox_profile *p,
                              const struct sandbox_features *f, FILE *out)
{
    static const char *const kinds[] = {"ro", "rw", "tmpfs", "link"};
    char missing[512];
    fprintf(out, "  server %s: sandbox as enforced on this machine\n", m->name);
    fprintf(out, "    identity: %s\n",
            f->root     ? "the tenant's uid/gid (nobody when a tenant has none), no groups"
            : f->userns ? "the service user, in a user namespace"
                        : "NOT CONFINED: no user namespaces for an unprivileged spawner");
    fprintf(out, "    namespaces: mount, pid, ipc, uts, cgroup%s\n",
            p->network ? " (network: host)" : ", net (loopback only)");
    fprintf(out, "    filesystem:");
    for (size_t i = 0; i < p->nmounts; i++)
        fprintf(out, " %s(%s)", p->mounts[i].path, kinds[p->mounts[i].kind]);
    fprintf(out, " /dev(null,zero,full,random,urandom) /proc(own pid namespace)\n");
    fprintf(out, "    landlock: %s\n",
            f->landlock_abi > 0 ? "mirrors the filesystem view" : "unavailable on this kernel");
    fprintf(out, "    rlimits: core=0 nofile=%llu nproc=%llu cpu_s=%s address_space=%s\n",
            (unsigned long long)p->rl.nofile, (unsigned long long)p->rl.nproc,
            p->rl.set_cpu ? "set" : "unlimited", p->rl.set_as ? "set" : "unlimited");
    fprintf(out, "    cgroup: %s\n",
            f->cgroup.available ? "own leaf (memory.max, pids.max)" : f->cgroup.why);
    fprintf(out, "    capabilities: none (bounding set empty, securebits locked), no_new_privs\n");
    fprintf(out, "    seccomp:\n");
    sandbox_seccomp_describe(&m->sandbox, out);
    sandbox_missing(f, m, missing, sizeof(missing));
    if (missing[0] != '\0')
        fprintf(out, "    NOT IN FORCE HERE: %s\n", missing);
}
