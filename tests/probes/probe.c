/*
 * probe.c — escape probes for mcpvisor's sandbox, packaged as a minimal stdio MCP server so that
 * mcpvisor runs it exactly as it runs a real server (same spawn path, same sandbox).
 *
 * Newline-delimited JSON-RPC 2.0 on stdin/stdout with hand-rolled JSON (no libraries: the binary
 * must run inside a bare sandbox). One tool, `probe`, with arguments {"name": "<probe>"} and, for
 * some probes, "path", "pid", "port" and "limit". Its text content is one JSON object line:
 *   {"probe":"ptrace","result":"refused","errno":1,"detail":"..."}
 * result is "refused" (the escape failed, as it must), "escaped" (it worked: a sandbox failure),
 * "skipped" (cannot be tried here; detail says why), "ok"/"failed" (threads) or "info" (ids,
 * env, fds: the detail is the observation). Each probe attempts the real escape; where a call
 * could change the host when run unconfined, it gets a bad pointer or runs in a throw-away child,
 * so that running this binary directly as root (where most probes report "escaped") is safe.
 * Probes that the sandbox answers by killing the process (kexec_load, x32) simply die.
 *
 * `probe --run NAME [key=value ...]` runs one probe and prints its line, for manual use.
 * This is test equipment: it trusts its input and exits on allocation failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <sys/personality.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define SERVER_NAME      "mcpvisor-probe"
#define SERVER_VERSION   "1.0.0"
#define PROTOCOL_LATEST  "2025-11-25"
#define X32_SYSCALL_BIT  0x40000000L
#define FORK_LIMIT       10000
#define HOG_BLOCK_MB     64
#define HOG_LIMIT_MB     4096
#define MAX_VISIBLE_PIDS 3 /* init, the server, one helper */
#define BAD_PTR          ((void *)1)
#define JSON_MAX_DEPTH   64

extern char **environ;

/* ---- a growable string ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            fputs("probe: out of memory\n", stderr);
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_fmt(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Appends s as a JSON string, quotes included. */
static void buf_json(struct buf *b, const char *s)
{
    buf_add(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        char esc[8];
        switch (*c) {
        case '"':
            buf_add(b, "\\\"", 2);
            break;
        case '\\':
            buf_add(b, "\\\\", 2);
            break;
        case '\n':
            buf_add(b, "\\n", 2);
            break;
        case '\r':
            buf_add(b, "\\r", 2);
            break;
        case '\t':
            buf_add(b, "\\t", 2);
            break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(esc, sizeof(esc), "\\u%04x", *c);
                buf_add(b, esc, 6);
            } else {
                buf_add(b, (const char *)c, 1);
            }
        }
    }
    buf_add(b, "\"", 1);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- a minimal JSON reader over one NUL-terminated line ---- */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at '"'; returns the character after the closing quote, or NULL. */
static const char *skip_string(const char *p)
{
    for (p++; *p != '\0'; p++) {
        if (*p == '\\') {
            if (*++p == '\0')
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static const char *skip_value(const char *p, int depth)
{
    p = ws(p);
    if (depth > JSON_MAX_DEPTH)
        return NULL;
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || (p = skip_string(p)) == NULL)
                    return NULL;
                p = ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if ((p = skip_value(p, depth + 1)) == NULL)
                return NULL;
            p = ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
            p = ws(p);
        }
    }
    const char *start = p;
    while (*p != '\0' && strchr(",}] \t\r\n", *p) == NULL)
        p++;
    return p > start ? p : NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends code point cp to out as UTF-8; false if it does not fit. */
static bool put_utf8(char *out, size_t outlen, size_t *n, unsigned cp)
{
    char enc[3];
    size_t k;
    if (cp < 0x80) {
        enc[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        enc[0] = (char)(0xc0 | (cp >> 6));
        enc[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else { /* surrogate pairs are not joined: probe arguments are ASCII */
        enc[0] = (char)(0xe0 | (cp >> 12));
        enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        enc[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    }
    if (*n + k >= outlen)
        return false;
    memcpy(out + *n, enc, k);
    *n += k;
    return true;
}

/* Decodes the JSON string at v (at '"') into out; false if it is not a string or too long. */
static bool get_str(const char *v, char *out, size_t outlen)
{
    size_t n = 0;
    if (v == NULL || outlen == 0 || *(v = ws(v)) != '"')
        return false;
    for (v++; *v != '"'; v++) {
        if (*v == '\0')
            return false;
        if (*v != '\\') {
            if (n + 1 >= outlen)
                return false;
            out[n++] = *v; /* raw bytes, UTF-8 included, pass through */
            continue;
        }
        unsigned cp;
        switch (*++v) {
        case 'n':
            cp = '\n';
            break;
        case 't':
            cp = '\t';
            break;
        case 'r':
            cp = '\r';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'u':
            cp = 0;
            for (int i = 1; i <= 4; i++) {
                int h = hexval(v[i]);
                if (h < 0)
                    return false;
                cp = cp * 16 + (unsigned)h;
            }
            v += 4;
            break;
        case '\0':
            return false;
        default: /* \" \\ \/ */
            cp = (unsigned char)*v;
        }
        if (!put_utf8(out, outlen, &n, cp))
            return false;
    }
    out[n] = '\0';
    return true;
}

/* The value of member `key` of the object at obj, or NULL. */
static const char *member(const char *obj, const char *key)
{
    char name[128];
    const char *p;
    if (obj == NULL || *(p = ws(obj)) != '{')
        return NULL;
    p = ws(p + 1);
    while (*p == '"') {
        bool match = get_str(p, name, sizeof(name)) && strcmp(name, key) == 0;
        if ((p = skip_string(p)) == NULL)
            return NULL;
        p = ws(p);
        if (*p++ != ':')
            return NULL;
        p = ws(p);
        if (match)
            return p;
        if ((p = skip_value(p, 1)) == NULL)
            return NULL;
        p = ws(p);
        if (*p != ',')
            return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

/* A number, or a string holding one. */
static bool get_long(const char *v, long *out)
{
    char tmp[32];
    const char *s = tmp;
    char *end;
    if (v == NULL)
        return false;
    v = ws(v);
    if (*v == '"') {
        if (!get_str(v, tmp, sizeof(tmp)))
            return false;
    } else {
        s = v;
    }
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    *out = n;
    return true;
}

/* ---- probes ---- */

struct args {
    char name[64];
    char path[PATH_MAX];
    bool has_pid, has_port, has_limit;
    long pid, port, limit;
};

struct result {
    const char *result; /* refused, escaped, skipped, ok, failed, info */
    int err;
    struct buf detail;
};

static void set(struct result *r, const char *result, int err)
{
    r->result = result;
    r->err = err;
}

static const char *errname(int e)
{
    const char *n = e == 0 ? "OK" : strerrorname_np(e);
    return n != NULL ? n : "E?";
}

/* A refusal errno for a call that needs a privilege: EPERM or EACCES. */
static bool denied(int e)
{
    return e == EPERM || e == EACCES;
}

/*
 * Runs fn in a forked child (for attempts that would change this process, such as unshare or
 * chroot) and returns its errno (0 on success), or -(signal) if it died.
 */
static int in_child(int (*fn)(const void *), const void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == -1)
        return errno;
    if (pid == 0) {
        errno = 0;
        int rc = fn(arg);
        _exit(rc == 0 ? 0 : (errno > 0 && errno < 255 ? errno : 255));
    }
    int st;
    while (waitpid(pid, &st, 0) == -1)
        if (errno != EINTR)
            return errno;
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

static int do_seize(const void *arg)
{
    /* PTRACE_SEIZE: the same permission check as PTRACE_ATTACH without stopping the target;
     * the child's exit detaches it again. */
    return ptrace(PTRACE_SEIZE, *(const pid_t *)arg, NULL, NULL) == -1 ? -1 : 0;
}

static void probe_ptrace(const struct args *a, struct result *r)
{
    pid_t targets[2] = {getppid(), 1};
    const char *names[2] = {"ppid", "pid 1"};
    bool escaped = false;
    int first = 0;

    for (int i = 0; i < 2; i++) {
        if (targets[i] <= 0 || (i == 1 && targets[0] == 1)) {
            buf_fmt(&r->detail, "%s: not tried; ", names[i]);
            continue;
        }
        int e = in_child(do_seize, &targets[i]);
        buf_fmt(&r->detail, "%s (%d) PTRACE_SEIZE: %s; ", names[i], (int)targets[i],
                e < 0 ? "child died" : errname(e));
        if (e == 0)
            escaped = true;
        if (first == 0 && e > 0)
            first = e;
    }
    /* process_vm_readv: a permitted call fails with EFAULT on the unmapped remote address. */
    if (targets[0] > 0) {
        char c;
        struct iovec local = {&c, 1}, remote = {BAD_PTR, 1};
        ssize_t n = process_vm_readv(targets[0], &local, 1, &remote, 1, 0);
        int e = n == -1 ? errno : 0;
        buf_fmt(&r->detail, "process_vm_readv(ppid): %s", errname(e));
        if (n >= 0 || e == EFAULT)
            escaped = true;
        if (first == 0)
            first = e;
    }
    set(r, escaped ? "escaped" : "refused", first);
}

static void probe_mount(const struct args *a, struct result *r)
{
    char dir[] = "/tmp/probe-mnt-XXXXXX";
    const char *target = mkdtemp(dir) != NULL ? dir : "/tmp";
    int rc = mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m");
    int e = rc == -1 ? errno : 0;
    buf_fmt(&r->detail, "mount tmpfs on %s: %s", target, errname(e));
    if (rc == 0)
        umount2(target, MNT_DETACH);
    if (target == dir)
        rmdir(dir);
    set(r, rc == 0 ? "escaped" : "refused", e);
}

static int do_unshare(const void *arg)
{
    return unshare(*(const int *)arg);
}

static void probe_unshare(const struct args *a, struct result *r)
{
    static const int flags[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID};
    static const char *const names[] = {"CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWNET",
                                        "CLONE_NEWPID"};
    bool escaped = false;
    int first = -1;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        int e = in_child(do_unshare, &flags[i]);
        buf_fmt(&r->detail, "unshare(%s): %s; ", names[i], e < 0 ? "child died" : errname(e));
        escaped = escaped || e == 0;
        if (first == -1)
            first = e;
    }
    set(r, escaped ? "escaped" : "refused", first < 0 ? 0 : first);
}

/* One syscall whose refusal is EPERM/EACCES; success or any other error means it reached the
 * kernel's implementation. */
static void classify(struct result *r, const char *what, long rc, int e)
{
    buf_fmt(&r->detail, "%s: %s", what, rc >= 0 ? "succeeded" : errname(e));
    if (rc >= 0)
        set(r, "escaped", 0);
    else if (denied(e))
        set(r, "refused", e);
    else if (e == ENOSYS) {
        buf_str(&r->detail, " (the kernel lacks it)");
        set(r, "skipped", e);
    } else {
        buf_str(&r->detail, " (reached the kernel's implementation)");
        set(r, "escaped", e);
    }
}

static void probe_bpf(const struct args *a, struct result *r)
{
    /* NULL attr with size 0: an all-zero BPF_PROG_LOAD gets past the copy to the privilege
     * check (EPERM when unprivileged BPF is off) or the verifier (EINVAL). */
    long rc = syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0);
    classify(r, "bpf(BPF_PROG_LOAD, NULL, 0)", rc, errno);
}

static void probe_keyctl(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
    classify(r, "keyctl(KEYCTL_GET_KEYRING_ID, user keyring)", rc, errno);
}

static void probe_add_key(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_add_key, "user", "mcpvisor-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    classify(r, "add_key(user, process keyring)", rc, errno);
}

static void probe_perf_event_open(const struct args *a, struct result *r)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    int e = errno;
    if (fd >= 0)
        close((int)fd);
    classify(r, "perf_event_open(self, cpu clock)", fd, e);
}

static void probe_userfaultfd(const struct args *a, struct result *r)
{
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    int e = errno;
    if (fd >= 0)
        close((int)fd);
    classify(r, "userfaultfd", fd, e);
}

static void probe_io_uring_setup(const struct args *a, struct result *r)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long fd = syscall(SYS_io_uring_setup, 1, &p);
    int e = errno;
    if (fd >= 0)
        close((int)fd);
    classify(r, "io_uring_setup(1)", fd, e);
}

/* Kill-tier calls: the sandbox kills the process (the test sees it die); with action "errno"
 * they return EPERM. Invalid flags make a permitted call fail instead of acting. */
static void probe_kexec_load(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_kexec_load, 0, 0, NULL, 0x7fff0000UL);
    int e = errno;
    buf_str(&r->detail, "not killed; ");
    classify(r, "kexec_load(invalid flags)", rc, e);
    if (strcmp(r->result, "skipped") == 0)
        set(r, "escaped", e); /* ENOSYS from the kernel still means the filter let it pass */
}

static void probe_init_module(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_init_module, NULL, 0, "");
    int e = errno;
    buf_str(&r->detail, "not killed; ");
    classify(r, "init_module(NULL, 0)", rc, e);
    if (strcmp(r->result, "skipped") == 0)
        set(r, "escaped", e);
}

static void probe_x32(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_getpid | X32_SYSCALL_BIT);
    int e = errno;
    buf_fmt(&r->detail, "x32 getpid returned %ld (%s): not killed", rc, rc < 0 ? errname(e) : "OK");
    set(r, "escaped", rc < 0 ? e : 0);
}

static int do_int80(const void *arg)
{
#if defined(__x86_64__)
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(20L /* i386 getpid */) : "memory", "rcx", "r11");
    return rc == getpid() ? 0 : -1;
#else
    errno = ENOSYS;
    return -1;
#endif
}

static void probe_i386(const struct args *a, struct result *r)
{
    /* In a child: SIGSYS is the expected outcome, SIGSEGV means no IA32 emulation. */
    int e = in_child(do_int80, NULL);
    if (e == -SIGSYS) {
        buf_str(&r->detail, "int 0x80 getpid: killed by SIGSYS");
        set(r, "refused", 0);
    } else if (e < 0) {
        buf_fmt(&r->detail, "int 0x80 getpid: died of signal %d (no IA32 emulation?)", -e);
        set(r, "skipped", 0);
    } else {
        buf_fmt(&r->detail, "int 0x80 getpid: %s", e == 0 ? "returned our pid" : errname(e));
        set(r, e == ENOSYS ? "skipped" : "escaped", e);
    }
}

static void probe_setuid0(const struct args *a, struct result *r)
{
    int rc1 = setuid(0);
    int e1 = rc1 == -1 ? errno : 0;
    int rc2 = setresuid(0, 0, 0);
    int e2 = rc2 == -1 ? errno : 0;
    buf_fmt(&r->detail, "setuid(0): %s; setresuid(0,0,0): %s; uid now %d, euid %d", errname(e1),
            errname(e2), (int)getuid(), (int)geteuid());
    bool escaped = rc1 == 0 || rc2 == 0 || geteuid() == 0;
    set(r, escaped ? "escaped" : "refused", e1);
}

static int do_chroot(const void *arg)
{
    return chroot("/");
}

static void probe_chroot(const struct args *a, struct result *r)
{
    int e = in_child(do_chroot, NULL);
    buf_fmt(&r->detail, "chroot(\"/\"): %s", e < 0 ? "child died" : errname(e));
    set(r, e == 0 ? "escaped" : "refused", e < 0 ? 0 : e);
}

static void probe_shadow(const struct args *a, struct result *r)
{
    int fd = open("/etc/shadow", O_RDONLY | O_CLOEXEC);
    int e = fd == -1 ? errno : 0;
    if (fd >= 0) {
        char c;
        ssize_t n = read(fd, &c, 1);
        buf_fmt(&r->detail, "open(/etc/shadow): OK, read %zd byte(s)", n);
        close(fd);
        set(r, "escaped", 0);
        return;
    }
    buf_fmt(&r->detail, "open(/etc/shadow): %s", errname(e));
    set(r, "refused", e);
}

static void try_create(struct result *r, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int e = fd == -1 ? errno : 0;
    buf_fmt(&r->detail, "create %s: %s", path, errname(e));
    if (fd >= 0) {
        close(fd);
        unlink(path);
        set(r, "escaped", 0);
    } else {
        set(r, "refused", e);
    }
}

/* The filesystem view as a server sees it (not escapes): "create" makes arguments.path and leaves
 * it there, "read" opens it; result "ok" or "refused" with the errno. */
static void open_path(struct result *r, const char *path, int flags, const char *verb)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    int e = fd == -1 ? errno : 0;
    buf_fmt(&r->detail, "%s %s: %s", verb, path, errname(e));
    if (fd >= 0)
        close(fd);
    set(r, fd >= 0 ? "ok" : "refused", e);
}

static void probe_create(const struct args *a, struct result *r)
{
    open_path(r, a->path, O_WRONLY | O_CREAT, "create");
}

static void probe_read(const struct args *a, struct result *r)
{
    open_path(r, a->path, O_RDONLY, "open");
}

static void probe_write_etc(const struct args *a, struct result *r)
{
    try_create(r, "/etc/probe-test");
}

static void probe_write_usr(const struct args *a, struct result *r)
{
    try_create(r, "/usr/probe-test");
}

static void probe_socket(struct result *r, const char *what, int family, int type, int proto)
{
    int fd = socket(family, type | SOCK_CLOEXEC, proto);
    int e = fd == -1 ? errno : 0;
    buf_fmt(&r->detail, "%s: %s", what, errname(e));
    if (fd >= 0)
        close(fd);
    set(r, fd >= 0 ? "escaped" : "refused", e);
}

static void probe_raw_socket(const struct args *a, struct result *r)
{
    probe_socket(r, "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)", AF_INET, SOCK_RAW, IPPROTO_ICMP);
}

static void probe_packet_socket(const struct args *a, struct result *r)
{
    probe_socket(r, "socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)", AF_PACKET, SOCK_RAW,
                 (int)htons(0x0003));
}

/* Non-blocking TCP connect with a 1 s wait; returns 0 when connected, else the errno (ETIMEDOUT
 * when nothing answered). Never sends data. */
static int tcp_connect(uint32_t addr, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return errno;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(addr);
    int e = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        e = errno;
        if (e == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            int n = poll(&pfd, 1, 1000);
            socklen_t len = sizeof(e);
            if (n == 0)
                e = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == -1)
                e = errno;
        }
    }
    close(fd);
    return e;
}

static void probe_connect_loopback(const struct args *a, struct result *r)
{
    long port = a->has_port ? a->port : -1;
    const char *env = getenv("PROBE_PORT");
    char *end;
    if (port < 0 && env != NULL) {
        port = strtol(env, &end, 10);
        if (*end != '\0')
            port = -1;
    }
    if (port <= 0 || port > 65535) {
        buf_str(&r->detail, "no port: pass arguments.port or PROBE_PORT");
        set(r, "skipped", 0);
        return;
    }
    int e = tcp_connect(0x7f000001, (uint16_t)port);
    buf_fmt(&r->detail, "connect 127.0.0.1:%ld: %s", port, errname(e));
    set(r, e == 0 ? "escaped" : "refused", e);
}

static void probe_connect_external(const struct args *a, struct result *r)
{
    int e = tcp_connect(0x0affff01 /* 10.255.255.1 */, 9);
    buf_fmt(&r->detail, "connect 10.255.255.1:9: %s", errname(e));
    if (e == ETIMEDOUT)
        buf_str(&r->detail, " (the SYN left: the network is reachable)");
    set(r, e == ENETUNREACH || e == EAFNOSUPPORT || denied(e) ? "refused" : "escaped", e);
}

/* Numeric entries of /proc; lists up to 16 of them with their comm into detail. */
static int visible_pids(struct buf *detail)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        if (n++ < 16 && detail != NULL) {
            char path[64], comm[32] = "?";
            snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                ssize_t k = read(fd, comm, sizeof(comm) - 1);
                comm[k > 0 ? k : 0] = '\0';
                comm[strcspn(comm, "\n")] = '\0';
                close(fd);
            }
            buf_fmt(detail, "%s%ld(%s)", n > 1 ? " " : "", pid, comm);
        }
    }
    closedir(d);
    return n;
}

static void probe_host_pids(const struct args *a, struct result *r)
{
    struct buf list = {0};
    int n = visible_pids(&list);
    if (n < 0) {
        buf_fmt(&r->detail, "opendir(/proc): %s", errname(errno));
        set(r, "refused", errno);
        buf_free(&list);
        return;
    }
    buf_fmt(&r->detail, "%d pids visible: %s", n, list.p != NULL ? list.p : "");
    buf_free(&list);
    set(r, n <= MAX_VISIBLE_PIDS ? "refused" : "escaped", 0);
}

static void probe_kill_host(const struct args *a, struct result *r)
{
    bool escaped = false;
    int err = 0;
    int n = visible_pids(NULL);
    buf_fmt(&r->detail, "%d pids visible in /proc", n);
    escaped = n > MAX_VISIBLE_PIDS;
    /* arguments.pid is a host pid (the daemon's); the few lowest pids name the sandbox's own
     * init and server, so they prove nothing. */
    if (a->has_pid && a->pid <= MAX_VISIBLE_PIDS) {
        buf_fmt(&r->detail, "; pid %ld not tried: inside the sandbox's own pid range", a->pid);
    } else if (a->has_pid) {
        int rc = kill((pid_t)a->pid, 0);
        err = rc == -1 ? errno : 0;
        buf_fmt(&r->detail, "; kill(%ld, 0): %s", a->pid, errname(err));
        /* EPERM still proves the process is visible from here. */
        escaped = escaped || rc == 0 || err == EPERM;
    }
    set(r, escaped ? "escaped" : "refused", err);
}

static void probe_fork_bomb(const struct args *a, struct result *r)
{
    long limit = a->has_limit && a->limit > 0 && a->limit < FORK_LIMIT ? a->limit : FORK_LIMIT;
    pid_t *pids = calloc((size_t)limit, sizeof(pid_t));
    long n = 0;
    int e = 0;
    if (pids == NULL) {
        set(r, "skipped", ENOMEM);
        return;
    }
    pid_t self = getpid();
    fflush(NULL);
    while (n < limit) {
        pid_t pid = fork();
        if (pid == -1) {
            e = errno;
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != self)
                _exit(0);
            for (;;)
                pause();
        }
        pids[n++] = pid;
    }
    for (long i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    for (long i = 0; i < n; i++)
        while (waitpid(pids[i], NULL, 0) == -1 && errno == EINTR)
            ;
    free(pids);
    buf_fmt(&r->detail, "%ld of %ld forks succeeded%s%s", n, limit, e != 0 ? ", then " : "",
            e != 0 ? errname(e) : "");
    set(r, n < limit ? "refused" : "escaped", e);
}

static void probe_memory_hog(const struct args *a, struct result *r)
{
    long limit = a->has_limit && a->limit > 0 && a->limit < HOG_LIMIT_MB ? a->limit : HOG_LIMIT_MB;
    int p[2];
    if (pipe2(p, O_CLOEXEC) == -1) {
        set(r, "skipped", errno);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == -1) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        set(r, "skipped", e);
        return;
    }
    if (pid == 0) {
        /* The hog, not the server, is what an OOM kill should pick. */
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1000", 4) < 0) {
                /* best effort */
            }
            close(fd);
        }
        close(p[0]);
        for (long mb = 0; mb < limit;) {
            size_t len = (size_t)HOG_BLOCK_MB << 20;
            char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                _exit(errno);
            for (size_t off = 0; off < len; off += 4096)
                m[off] = 1;
            mb += HOG_BLOCK_MB;
            if (write(p[1], &mb, sizeof(mb)) != (ssize_t)sizeof(mb))
                _exit(EIO);
        }
        _exit(0);
    }
    close(p[1]);
    long reached = 0, mb;
    while (read(p[0], &mb, sizeof(mb)) == (ssize_t)sizeof(mb))
        reached = mb;
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
        ;
    if (WIFSIGNALED(st)) {
        buf_fmt(&r->detail, "killed by signal %d after %ld MiB (limit %ld MiB)", WTERMSIG(st),
                reached, limit);
        set(r, "refused", 0);
    } else if (WEXITSTATUS(st) != 0) {
        buf_fmt(&r->detail, "stopped by %s after %ld MiB", errname(WEXITSTATUS(st)), reached);
        set(r, "refused", WEXITSTATUS(st));
    } else {
        buf_fmt(&r->detail, "allocated and touched %ld MiB", reached);
        set(r, "escaped", 0);
    }
}

static void probe_other_tenant(const struct args *a, struct result *r)
{
    if (a->path[0] == '\0') {
        buf_str(&r->detail, "no path: pass arguments.path");
        set(r, "skipped", 0);
        return;
    }
    int fd = open(a->path, O_RDONLY | O_CLOEXEC);
    int e = fd == -1 ? errno : 0;
    buf_fmt(&r->detail, "open(%s): %s", a->path, errname(e));
    if (fd >= 0)
        close(fd);
    set(r, fd >= 0 ? "escaped" : "refused", e);
}

/* Opens /proc/<pid>/<file> and reads from it; true if that worked. Never copies the content. */
static bool read_proc(struct result *r, long pid, const char *file, int *err)
{
    char path[64], c[64];
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        *err = errno;
        buf_fmt(&r->detail, "%s: %s; ", path, errname(errno));
        return false;
    }
    ssize_t n;
    if (strcmp(file, "mem") == 0) {
        /* Any mapped address of the target: its stack pointer area is unknown here, so try the
         * usual non-PIE text base and report what the read says. */
        n = pread(fd, c, sizeof(c), 0x400000);
    } else {
        n = read(fd, c, sizeof(c));
    }
    *err = n == -1 ? errno : 0;
    buf_fmt(&r->detail, "%s: opened, read %s; ", path, n >= 0 ? "worked" : errname(errno));
    close(fd);
    /* Opening mem already passed the ptrace-attach check. */
    return n > 0 || strcmp(file, "mem") == 0;
}

static void probe_daemon_memory(const struct args *a, struct result *r)
{
    long targets[3] = {getppid(), 1, a->has_pid ? a->pid : 0};
    bool escaped = false;
    int first = 0, e = 0;
    for (int i = 0; i < 3; i++) {
        if (targets[i] <= 0 || targets[i] == getpid() || (i > 0 && targets[i] == targets[0]) ||
            (i == 2 && targets[2] == 1))
            continue;
        for (int j = 0; j < 2; j++) {
            if (i == 1 && j == 0)
                continue; /* /proc/1/environ only, as asked; /proc/1/mem is ppid's when ppid=1 */
            escaped = read_proc(r, targets[i], j == 0 ? "mem" : "environ", &e) || escaped;
            if (first == 0)
                first = e;
        }
    }
    set(r, escaped ? "escaped" : "refused", first);
}

/* The value of a "Key:\tvalue" line of /proc/self/status, or false. */
static bool status_field(const char *key, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    size_t kl = strlen(key);
    bool found = false;
    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            const char *v = line + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, outlen, "%.*s", (int)strcspn(v, "\n"), v);
            found = true;
        }
    }
    fclose(f);
    return found;
}

static void probe_caps(const struct args *a, struct result *r)
{
    static const char *const keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    bool zero = true;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char v[64] = "missing";
        if (!status_field(keys[i], v, sizeof(v)))
            zero = strcmp(keys[i], "CapAmb") == 0 && zero; /* CapAmb is absent before 4.3 */
        else
            zero = zero && strspn(v, "0") == strlen(v);
        buf_fmt(&r->detail, "%s%s=%s", i > 0 ? " " : "", keys[i], v);
    }
    set(r, zero ? "refused" : "escaped", 0);
}

static void probe_status_is(struct result *r, const char *key, const char *want)
{
    char v[64] = "missing";
    bool ok = status_field(key, v, sizeof(v)) && strcmp(v, want) == 0;
    buf_fmt(&r->detail, "%s: %s", key, v);
    set(r, ok ? "refused" : "escaped", 0);
}

static void probe_nnp(const struct args *a, struct result *r)
{
    probe_status_is(r, "NoNewPrivs", "1");
}

static void probe_seccomp_mode(const struct args *a, struct result *r)
{
    char n[32];
    probe_status_is(r, "Seccomp", "2");
    if (status_field("Seccomp_filters", n, sizeof(n)))
        buf_fmt(&r->detail, "; Seccomp_filters: %s", n);
}

static void probe_ids(const struct args *a, struct result *r)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, groups[64];
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    int n = getgroups(64, groups);
    buf_fmt(&r->detail, "uid=%u,%u,%u gid=%u,%u,%u groups=", (unsigned)ru, (unsigned)eu,
            (unsigned)su, (unsigned)rg, (unsigned)eg, (unsigned)sg);
    for (int i = 0; i < n; i++)
        buf_fmt(&r->detail, "%s%u", i > 0 ? "," : "", (unsigned)groups[i]);
    set(r, "info", 0);
}

static void probe_env(const struct args *a, struct result *r)
{
    for (char **e = environ; *e != NULL; e++)
        buf_fmt(&r->detail, "%s%s", e != environ ? "\n" : "", *e);
    set(r, "info", 0);
}

static void probe_fds(const struct args *a, struct result *r)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        buf_fmt(&r->detail, "opendir(/proc/self/fd): %s", errname(errno));
        set(r, "skipped", errno);
        return;
    }
    struct dirent *de;
    bool first = true;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end != '\0' || de->d_name[0] == '\0' || fd == dirfd(d))
            continue;
        char path[64], target[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
        ssize_t k = readlink(path, target, sizeof(target) - 1);
        target[k > 0 ? k : 0] = '\0';
        buf_fmt(&r->detail, "%s%ld -> %s", first ? "" : "\n", fd, target);
        first = false;
    }
    closedir(d);
    set(r, "info", 0);
}

static void probe_tiocsti(const struct args *a, struct result *r)
{
    char c = 'x';
    long rc1 = syscall(SYS_ioctl, 0, TIOCSTI, &c);
    int e1 = rc1 == -1 ? errno : 0;
    /* CVE-2019-10063: the kernel ignores the high 32 bits of cmd. */
    long rc2 = syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c);
    int e2 = rc2 == -1 ? errno : 0;
    buf_fmt(&r->detail, "ioctl(0, TIOCSTI): %s; with high bits: %s", errname(e1), errname(e2));
    if (!denied(e1) || !denied(e2))
        buf_str(&r->detail, " (not EPERM: the call reached the tty layer)");
    set(r, denied(e1) && denied(e2) ? "refused" : "escaped", e1);
}

static void probe_personality(const struct args *a, struct result *r)
{
    int old = personality(0xffffffff);
    int rc = personality(ADDR_NO_RANDOMIZE);
    int e = rc == -1 ? errno : 0;
    if (rc != -1 && old != -1)
        personality((unsigned long)old);
    buf_fmt(&r->detail, "personality(ADDR_NO_RANDOMIZE): %s; query: %s", errname(e),
            old == -1 ? "refused" : "works");
    set(r, rc == -1 ? "refused" : "escaped", e);
}

static void probe_suid_file(const struct args *a, struct result *r)
{
    char path[] = "/tmp/probe-suid-XXXXXX";
    int fd = mkstemp(path);
    if (fd == -1) {
        buf_fmt(&r->detail, "mkstemp(/tmp): %s", errname(errno));
        set(r, "skipped", errno);
        return;
    }
    close(fd);
    int rc = chmod(path, 04755);
    int e = rc == -1 ? errno : 0;
    struct stat st;
    bool suid = stat(path, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)) != 0;
    unlink(path);
    buf_fmt(&r->detail, "chmod u+s: %s", errname(e));
    /* The same without chmod: create the file with the mode. */
    char path2[] = "/tmp/probe-suid2-XXXXXX";
    if (mkdtemp(path2) != NULL) {
        char file[64];
        snprintf(file, sizeof(file), "%s/f", path2);
        int fd2 = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 04755);
        int e2 = fd2 == -1 ? errno : 0;
        if (fd2 >= 0) {
            suid = suid || (fstat(fd2, &st) == 0 && (st.st_mode & S_ISUID) != 0);
            close(fd2);
            unlink(file);
        }
        rmdir(path2);
        buf_fmt(&r->detail, "; open(O_CREAT, 04755): %s", errname(e2));
    }
    set(r, suid ? "escaped" : "refused", e);
}

static void probe_clone3(const struct args *a, struct result *r)
{
    long rc = syscall(SYS_clone3, BAD_PTR, 88);
    int e = errno;
    buf_fmt(&r->detail, "clone3(bad pointer): %s", rc == -1 ? errname(e) : "succeeded");
    if (rc == 0)
        _exit(0); /* cannot happen with a bad pointer; never run two servers */
    set(r, rc == -1 && e == ENOSYS ? "refused" : "escaped", rc == -1 ? e : 0);
}

static void *thread_main(void *arg)
{
    return arg;
}

static void probe_threads(const struct args *a, struct result *r)
{
    pthread_t t;
    void *res = NULL;
    int rc = pthread_create(&t, NULL, thread_main, (void *)0x2a);
    if (rc == 0)
        rc = pthread_join(t, &res);
    buf_fmt(&r->detail, "pthread_create: %s", errname(rc));
    set(r, rc == 0 && res == (void *)0x2a ? "ok" : "failed", rc);
}

static void probe_hostname(const struct args *a, struct result *r)
{
    /* A bad pointer: EFAULT if the call got past seccomp and CAP_SYS_ADMIN; EPERM if not. */
    long rc = syscall(SYS_sethostname, BAD_PTR, 5);
    classify(r, "sethostname(bad pointer)", rc, errno);
}

/* What the sandbox's init shows as its command line (NULs as spaces): the daemon's own command
 * line and configuration path would tell a server where to look. */
static void probe_init_cmdline(const struct args *a, struct result *r)
{
    char buf[512];
    int fd = open("/proc/1/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd == -1 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd != -1)
        close(fd);
    if (n < 0) {
        set(r, "refused", errno);
        buf_fmt(&r->detail, "/proc/1/cmdline: %s", errname(errno));
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    set(r, "info", 0);
    buf_fmt(&r->detail, "%s", buf);
}

struct probe {
    const char *name;
    void (*fn)(const struct args *, struct result *);
};

static const struct probe probes[] = {
    {"ptrace", probe_ptrace},
    {"mount", probe_mount},
    {"unshare", probe_unshare},
    {"bpf", probe_bpf},
    {"keyctl", probe_keyctl},
    {"add_key", probe_add_key},
    {"perf_event_open", probe_perf_event_open},
    {"userfaultfd", probe_userfaultfd},
    {"io_uring_setup", probe_io_uring_setup},
    {"kexec_load", probe_kexec_load},
    {"x32", probe_x32},
    {"i386", probe_i386},
    {"init_module", probe_init_module},
    {"setuid0", probe_setuid0},
    {"chroot", probe_chroot},
    {"shadow", probe_shadow},
    {"write_etc", probe_write_etc},
    {"create", probe_create},
    {"read", probe_read},
    {"write_usr", probe_write_usr},
    {"raw_socket", probe_raw_socket},
    {"packet_socket", probe_packet_socket},
    {"connect_loopback", probe_connect_loopback},
    {"connect_external", probe_connect_external},
    {"kill_host", probe_kill_host},
    {"host_pids", probe_host_pids},
    {"fork_bomb", probe_fork_bomb},
    {"memory_hog", probe_memory_hog},
    {"other_tenant", probe_other_tenant},
    {"daemon_memory", probe_daemon_memory},
    {"caps", probe_caps},
    {"nnp", probe_nnp},
    {"seccomp_mode", probe_seccomp_mode},
    {"ids", probe_ids},
    {"env", probe_env},
    {"fds", probe_fds},
    {"tiocsti", probe_tiocsti},
    {"personality", probe_personality},
    {"suid_file", probe_suid_file},
    {"clone3", probe_clone3},
    {"threads", probe_threads},
    {"hostname", probe_hostname},
    {"init_cmdline", probe_init_cmdline},
};

#define NPROBES (sizeof(probes) / sizeof(probes[0]))

/* Runs the named probe (or "list") and appends its JSON line to out; false if unknown. */
static bool run_probe(const struct args *a, struct buf *out)
{
    if (strcmp(a->name, "list") == 0) {
        buf_str(out, "{\"probes\":[");
        for (size_t i = 0; i < NPROBES; i++) {
            if (i > 0)
                buf_str(out, ",");
            buf_json(out, probes[i].name);
        }
        buf_str(out, "]}");
        return true;
    }
    for (size_t i = 0; i < NPROBES; i++) {
        if (strcmp(a->name, probes[i].name) != 0)
            continue;
        struct result r = {"failed", 0, {0}};
        buf_str(&r.detail, "");
        errno = 0;
        probes[i].fn(a, &r);
        buf_str(out, "{\"probe\":");
        buf_json(out, probes[i].name);
        buf_str(out, ",\"result\":");
        buf_json(out, r.result);
        buf_fmt(out, ",\"errno\":%d,\"detail\":", r.err);
        buf_json(out, r.detail.p);
        buf_str(out, "}");
        buf_free(&r.detail);
        return true;
    }
    return false;
}

/* ---- the MCP server ---- */

static void send_line(struct buf *b)
{
    buf_add(b, "\n", 1);
    fwrite(b->p, 1, b->len, stdout);
    fflush(stdout);
}

static void send_error(const char *id, int code, const char *msg)
{
    struct buf b = {0};
    buf_fmt(&b, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":%d,\"message\":", id, code);
    buf_json(&b, msg);
    buf_str(&b, "}}");
    send_line(&b);
    buf_free(&b);
}

static void send_result(const char *id, const char *result)
{
    struct buf b = {0};
    buf_fmt(&b, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":", id);
    buf_str(&b, result);
    buf_str(&b, "}");
    send_line(&b);
    buf_free(&b);
}

static void handle_initialize(const char *id, const char *params)
{
    static const char *const known[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    char want[32];
    const char *version = PROTOCOL_LATEST;
    if (get_str(member(params, "protocolVersion"), want, sizeof(want)))
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strcmp(want, known[i]) == 0)
                version = known[i];
    struct buf b = {0};
    buf_fmt(&b,
            "{\"protocolVersion\":\"%s\",\"capabilities\":{\"tools\":{}},"
            "\"serverInfo\":{\"name\":\"" SERVER_NAME "\",\"version\":\"" SERVER_VERSION "\"}}",
            version);
    send_result(id, b.p);
    buf_free(&b);
}

static void handle_tools_list(const char *id)
{
    send_result(id, "{\"tools\":[{\"name\":\"probe\",\"description\":\"Attempt one sandbox "
                    "escape and report whether it was refused.\",\"inputSchema\":{\"type\":"
                    "\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"description\":"
                    "\"probe name, or list\"},\"path\":{\"type\":\"string\"},\"pid\":{\"type\":"
                    "\"integer\"},\"port\":{\"type\":\"integer\"},\"limit\":{\"type\":"
                    "\"integer\"}},\"required\":[\"name\"]}}]}");
}

static bool parse_args(const char *v, struct args *a)
{
    memset(a, 0, sizeof(*a));
    if (!get_str(member(v, "name"), a->name, sizeof(a->name)))
        return false;
    if (!get_str(member(v, "path"), a->path, sizeof(a->path)))
        a->path[0] = '\0';
    a->has_pid = get_long(member(v, "pid"), &a->pid);
    a->has_port = get_long(member(v, "port"), &a->port);
    a->has_limit = get_long(member(v, "limit"), &a->limit);
    return true;
}

static void handle_tools_call(const char *id, const char *params)
{
    char tool[64];
    struct args a;
    if (!get_str(member(params, "name"), tool, sizeof(tool)) || strcmp(tool, "probe") != 0) {
        send_error(id, -32602, "unknown tool");
        return;
    }
    if (!parse_args(member(params, "arguments"), &a)) {
        send_error(id, -32602, "arguments.name (a string) is required");
        return;
    }
    struct buf line = {0}, res = {0};
    bool known = run_probe(&a, &line);
    if (!known) {
        buf_str(&line, "{\"probe\":");
        buf_json(&line, a.name);
        buf_str(&line, ",\"result\":\"error\",\"errno\":0,\"detail\":\"unknown probe; try list\"}");
    }
    buf_str(&res, "{\"content\":[{\"type\":\"text\",\"text\":");
    buf_json(&res, line.p);
    buf_fmt(&res, "}],\"isError\":%s}", known ? "false" : "true");
    send_result(id, res.p);
    buf_free(&line);
    buf_free(&res);
}

static void handle_line(const char *line)
{
    const char *p = ws(line);
    if (*p == '\0')
        return;
    const char *end = skip_value(p, 0);
    if (*p != '{' || end == NULL || *ws(end) != '\0') {
        send_error("null", -32700, "parse error");
        return;
    }
    char method[64], id[128];
    const char *idv = member(p, "id");
    const char *params = member(p, "params");
    if (idv == NULL)
        return; /* a notification */
    const char *idend = skip_value(idv, 0);
    if (idend == NULL || (size_t)(idend - idv) >= sizeof(id)) {
        send_error("null", -32600, "invalid id");
        return;
    }
    memcpy(id, idv, (size_t)(idend - idv));
    id[idend - idv] = '\0';
    if (!get_str(member(p, "method"), method, sizeof(method))) {
        if (member(p, "result") == NULL && member(p, "error") == NULL)
            send_error(id, -32600, "invalid request");
        return; /* a response to a request we never sent: ignore */
    }
    if (strcmp(method, "initialize") == 0)
        handle_initialize(id, params);
    else if (strcmp(method, "ping") == 0)
        send_result(id, "{}");
    else if (strcmp(method, "tools/list") == 0)
        handle_tools_list(id);
    else if (strcmp(method, "tools/call") == 0)
        handle_tools_call(id, params);
    else
        send_error(id, -32601, "method not found");
}

static bool set_long(long *out, long v)
{
    *out = v;
    return true;
}

/* `probe --run NAME [key=value ...]`: one probe, its line on stdout. */
static int run_cli(int argc, char **argv)
{
    struct args a;
    memset(&a, 0, sizeof(a));
    snprintf(a.name, sizeof(a.name), "%s", argv[2]);
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        char *end;
        if (eq == NULL)
            continue;
        *eq = '\0';
        long v = strtol(eq + 1, &end, 10);
        bool num = *end == '\0' && end != eq + 1;
        if (strcmp(argv[i], "path") == 0)
            snprintf(a.path, sizeof(a.path), "%s", eq + 1);
        else if (strcmp(argv[i], "pid") == 0 && num)
            a.has_pid = set_long(&a.pid, v);
        else if (strcmp(argv[i], "port") == 0 && num)
            a.has_port = set_long(&a.port, v);
        else if (strcmp(argv[i], "limit") == 0 && num)
            a.has_limit = set_long(&a.limit, v);
    }
    struct buf out = {0};
    if (!run_probe(&a, &out)) {
        fprintf(stderr, "probe: unknown probe %s\n", a.name);
        return 2;
    }
    send_line(&out);
    buf_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--run") == 0)
        return run_cli(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) != -1) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (memchr(line, '\0', (size_t)n) != NULL) {
            send_error("null", -32700, "parse error");
            continue;
        }
        handle_line(line);
    }
    free(line);
    return 0;
}
