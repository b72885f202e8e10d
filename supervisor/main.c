/*
 * main.c — the command line, and the parent's start-up: load the configuration, bind the
 * listeners, re-exec the front under its own user with the listeners and a sealed copy of the
 * configuration, then become the spawner.
 *
 * The front is re-executed (not just forked) so it gets a fresh address space and ASLR layout,
 * and so it starts without anything the privileged parent had in memory.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "front.h"
#include "log.h"
#include "auditcli.h"
#include "pin.h"
#include "policy.h"
#include "spawn.h"
#include "tenantids.h"
#include "spawner.h"
#include "tls.h"
#include "util.h"
#include "version.h"

#define DEFAULT_CONFIG  "/etc/mcpvisor/mcpvisor.json"
#define FRONT_FD_SOCK   3
#define FRONT_FD_BUNDLE 4
#define FRONT_FD_LISTEN 5

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mcpvisor [run] [-c FILE]      run the daemon (default %s)\n"
            "       mcpvisor check [-c FILE] [--no-tools]\n"
            "                                     validate the configuration and manifests, then\n"
            "                                     list each server's tools against its pins\n"
            "       mcpvisor pin SERVER [-c FILE] [--write]\n"
            "                                     list the server's tools and their pins against "
            "its manifest\n"
            "       mcpvisor audit verify FILE...\n"
            "                                     check the audit log's hash chain\n"
            "       mcpvisor audit query FILE... [--user U] [--agent A] [--tool T] [--tenant T]\n"
            "                            [--server S] [--since TIME] [--until TIME] [--json]\n"
            "                                     who called which tool through which agent, "
            "when\n"
            "       mcpvisor keygen --tenant T --user U [--agent A] [--scope S]...\n"
            "                                     print a new API key and its api-keys.json "
            "record\n"
            "       mcpvisor version\n",
            DEFAULT_CONFIG);
}

static int bind_listener(const struct config_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof(ss));
    if (strchr(l->host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(l->port);
        if (inet_pton(AF_INET6, l->host, &s6->sin6_addr) != 1)
            fatalx("listener address=%s: not a numeric IPv6 address", l->address);
        slen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(l->port);
        if (inet_pton(AF_INET, l->host, &s4->sin_addr) != 1)
            fatalx("listener address=%s: not a numeric IPv4 address", l->address);
        slen = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1)
        fatal("socket for listener %s", l->address);
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        fatal("SO_REUSEADDR");
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        fatal("IPV6_V6ONLY");
    if (bind(fd, (struct sockaddr *)&ss, slen) == -1)
        fatal("cannot bind listener %s (is another process using the port?)", l->address);
    if (listen(fd, 511) == -1)
        fatal("listen %s", l->address);
    return fd;
}

/* In the forked child, before exec: place fds, drop to the front's user, exec ourselves. */
/* The front's fds: privsep socket, bundle, listeners, then the audit log when there is one. */
static void exec_front(int sock, int bundle, const int *lfds, size_t nl, int audit_fd,
                       const struct passwd *pw)
{
    int src[3 + CONFIG_MAX_LISTENERS];
    size_t n = 0;
    src[n++] = sock;
    src[n++] = bundle;
    for (size_t i = 0; i < nl; i++)
        src[n++] = lfds[i];
    if (audit_fd != -1)
        src[n++] = audit_fd;
    /* Lift every source above the target range first so no dup2 overwrites a pending source. */
    for (size_t i = 0; i < n; i++) {
        int moved = fcntl(src[i], F_DUPFD_CLOEXEC, 64);
        if (moved == -1)
            _exit(1);
        src[i] = moved;
    }
    for (size_t i = 0; i < n; i++) {
        if (dup2(src[i], FRONT_FD_SOCK + (int)i) == -1) /* dup2 clears FD_CLOEXEC */
            _exit(1);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
        _exit(1);
    /* A stderr pipe gets a description of the front's own, non-blocking (log_nonblocking):
     * setting O_NONBLOCK on the shared one would change the spawner's writes too. Opened while
     * still root, who may open the pipe. */
    struct stat est;
    if (fstat(STDERR_FILENO, &est) == 0 && S_ISFIFO(est.st_mode)) {
        int efd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (efd != -1 && dup2(efd, STDERR_FILENO) != -1) /* dup2 clears FD_CLOEXEC */
            close(efd);
    }
    if (pw != NULL) {
        for (int cap = 0; cap <= 63; cap++) {
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 && errno != EINVAL)
                _exit(1);
        }
        if (setgroups(0, NULL) == -1 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
            _exit(1);
        if (setresuid(0, 0, 0) != -1) /* must be impossible now */
            _exit(1);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        _exit(1);
    char nbuf[16];
    snprintf(nbuf, sizeof(nbuf), "%zu", nl);
    char *argv[] = {"mcpvisor", "__front", nbuf, NULL};
    execv("/proc/self/exe", argv);
    _exit(1);
}

/* TLS material is checked where it is read, so a bad key stops start-up (and `check`) with a
 * message instead of killing the front later. */
static int check_tls(const struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        char why[256];
        if (l->tls_cert_pem == NULL)
            continue;
        struct ssl_ctx_st *ctx = tls_server_ctx(l->tls_cert_pem, l->tls_key_pem, why, sizeof(why));
        if (ctx == NULL) {
            snprintf(err, errlen, "%s: /listen/%zu/tls: %s", cfg->path, i, why);
            return -1;
        }
        SSL_CTX_free(ctx);
    }
    return 0;
}

/* Probes what this kernel can enforce and compiles every manifest's sandbox. Refuses an
 * unprivileged start without user namespaces unless the configuration accepts it, and says
 * which protections are missing either way. */
static int sandbox_setup(const struct config *cfg, struct sandbox_features *feat,
                         struct sandbox_profile **out, char *err, size_t errlen)
{
    char missing[256];
    sandbox_features_probe(feat);
    sandbox_missing(feat, NULL, missing, sizeof(missing));
    if (!feat->root && !feat->userns) {
        if (!cfg->allow_weaker_sandbox) {
            snprintf(err, errlen,
                     "started without root and the kernel refuses unprivileged user namespaces: "
                     "children cannot be confined (missing: %.200s); run as root, enable user "
                     "namespaces, or set allow_weaker_sandbox",
                     missing);
            sandbox_features_cleanup(feat);
            return -1;
        }
        log_warn("sandbox_weaker missing=\"%s\" note=\"allow_weaker_sandbox is set\"", missing);
    }
    struct sandbox_profile *prof = calloc(cfg->nmanifests > 0 ? cfg->nmanifests : 1, sizeof(*prof));
    if (prof == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->nmanifests; i++) {
        char why[256];
        if (sandbox_profile_build(&cfg->manifests[i], &prof[i], why, sizeof(why)) == -1) {
            snprintf(err, errlen, "%s: /sandbox: %s", cfg->manifests[i].file, why);
            for (size_t j = 0; j < i; j++)
                sandbox_profile_free(&prof[j]);
            free(prof);
            sandbox_features_cleanup(feat);
            return -1;
        }
        /* A child cannot be given more descriptors than the daemon's hard limit (its set-up
         * would fail with EPERM at every spawn): it gets that limit, and the operator hears. */
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY &&
            prof[i].rl.nofile > (uint64_t)nofile.rlim_max) {
            log_warn("sandbox_nofile_lowered server=%s asked=%llu to=%llu note=\"the daemon's "
                     "hard RLIMIT_NOFILE is lower; raise LimitNOFILE=\"",
                     cfg->manifests[i].name, (unsigned long long)prof[i].rl.nofile,
                     (unsigned long long)nofile.rlim_max);
            prof[i].rl.nofile = (uint64_t)nofile.rlim_max;
        }
        sandbox_missing(feat, &cfg->manifests[i], missing, sizeof(missing));
        if (missing[0] != '\0')
            log_warn("sandbox_not_in_force server=%s missing=\"%s\"", cfg->manifests[i].name,
                     missing);
    }
    *out = prof;
    return 0;
}

/* The soft descriptor limit is raised to the hard one: the front's ceilings are sized from it
 * (front_fit_descriptors), and the spawner and front inherit it. Children get their manifest's
 * sandbox.limits.nofile. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        log_warn("nofile_not_raised error=\"%s\"", strerror(errno));
    else
        log_info("nofile_raised from=%llu to=%llu", (unsigned long long)was,
                 (unsigned long long)rl.rlim_cur);
}

/* The tenants allowed server m, counted up to 2. */
static size_t tenants_of(const struct config *cfg, const struct config_manifest *m)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->ntenants && n < 2; i++)
        n += config_tenant_allows(&cfg->tenants[i], m->name) ? 1 : 0;
    return n;
}

/* A server shared by several tenants that does not say it keeps their rows apart would mix them:
 * written on out (check) or logged (start-up, out NULL). Not an error: the operator may know. */
static void warn_shared(const struct config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->nmanifests; i++) {
        const struct config_manifest *m = &cfg->manifests[i];
        if (m->isolation != CONFIG_ISOLATION_SHARED || m->reads_principal_meta ||
            tenants_of(cfg, m) < 2)
            continue;
        if (out != NULL)
            fprintf(out,
                    "warning: %s: isolation \"shared\" runs one child for several tenants, and "
                    "the manifest does not declare \"reads_principal_meta\": true; unless the "
                    "server keeps tenants apart by params._meta[\"io.mcpvisor/principal\"], use "
                    "isolation \"tenant\"\n",
                    m->name);
        else
            log_warn("shared_without_principal_meta server=%s note=\"several tenants share one "
                     "child and the manifest does not declare reads_principal_meta\"",
                     m->name);
    }
}

static int cmd_run(const char *path)
{
    char err[CONFIG_ERR_MAX];
    raise_nofile();
    struct config *cfg = config_load_file(path, err, sizeof(err));
    if (cfg == NULL || check_tls(cfg, err, sizeof(err)) == -1) {
        log_error("configuration_invalid error=\"%s\"", err);
        config_free(cfg);
        return 1;
    }
    if (cfg->has_anonymous)
        log_warn("anonymous_enabled tenant=%s user=%s note=\"requests without credentials get "
                 "this principal; loopback listeners only\"",
                 cfg->anonymous.tenant, cfg->anonymous.user);
    warn_shared(cfg, NULL);

    const struct passwd *pw = NULL;
    if (geteuid() == 0) {
        pw = getpwnam(cfg->user);
        if (pw == NULL) {
            log_warn("front_user_missing user=%s fallback=nobody note=\"create the account "
                     "(systemd/mcpvisor.sysusers) so the front has a user of its own\"",
                     cfg->user);
            pw = getpwnam("nobody");
        }
        if (pw == NULL || pw->pw_uid == 0)
            fatalx("no unprivileged account for the front process (tried %s and nobody)",
                   cfg->user);
    } else {
        log_warn("running_unprivileged uid=%d note=\"children run as this user; tenant uids "
                 "need root\"",
                 (int)geteuid());
    }
    /* Root: a tenant without uid and gid gets its own, never nobody shared with others. */
    if (pw != NULL && tenantids_assign(cfg, pw->pw_uid, pw->pw_gid, err, sizeof(err)) == -1) {
        log_error("tenant_ids_unavailable error=\"%s\" note=\"mcpvisor does not start rather "
                  "than let tenants share a uid\"",
                  err);
        config_free(cfg);
        return 1;
    }

    int audit_fd = -1;
    if (cfg->audit_path != NULL) {
        audit_fd = spawner_audit_open(cfg->audit_path, err, sizeof(err));
        if (audit_fd == -1) {
            log_error("audit_unavailable error=\"%s\" note=\"mcpvisor does not start without "
                      "the audit log it is configured to write\"",
                      err);
            config_free(cfg);
            return 1;
        }
    }

    struct sandbox_features feat;
    struct sandbox_profile *prof = NULL;
    if (sandbox_setup(cfg, &feat, &prof, err, sizeof(err)) == -1) {
        log_error("sandbox_unavailable error=\"%s\"", err);
        if (audit_fd != -1)
            close(audit_fd);
        config_free(cfg);
        return 1;
    }
    sandbox_features_log(&feat);

    int lfds[CONFIG_MAX_LISTENERS];
    for (size_t i = 0; i < cfg->nlisteners; i++)
        lfds[i] = bind_listener(&cfg->listeners[i]);
    char berr[CONFIG_ERR_MAX];
    int bundle = spawner_bundle_memfd(cfg->path, berr, sizeof(berr));
    if (bundle == -1)
        fatalx("configuration: %s", berr);

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1)
        fatal("socketpair");

    /* Ignore SIGPIPE before forking; spawner_run blocks the rest. A file-size limit makes a
     * write fail with EFBIG (the audit log then answers audit_unavailable) instead of killing
     * the daemon with SIGXFSZ; children start with the default again. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    pid_t front = fork();
    if (front == -1)
        fatal("fork front");
    if (front == 0) {
        close(sp[0]);
        signal(SIGPIPE, SIG_DFL);
        exec_front(sp[1], bundle, lfds, cfg->nlisteners, audit_fd, pw);
    }
    close(sp[1]);
    close(bundle);
    if (audit_fd != -1)
        close(audit_fd);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        close(lfds[i]);
    log_info("started version=%s pid=%d front_pid=%d front_user=%s", MCPVISOR_VERSION,
             (int)getpid(), (int)front, pw != NULL ? pw->pw_name : "(unchanged)");
    int code = spawner_run(cfg, sp[0], front, cfg->path, &feat, prof);
    for (size_t i = 0; i < cfg->nmanifests; i++)
        sandbox_profile_free(&prof[i]);
    free(prof);
    sandbox_features_cleanup(&feat);
    config_free(cfg);
    return code;
}

static int cmd_front(int argc, char **argv)
{
    char err[CONFIG_ERR_MAX];
    log_set_proc("front");
    log_nonblocking(); /* the event loop never waits on whoever reads the log */
    if (argc != 3)
        fatalx("front: bad arguments");
    char *end;
    unsigned long nl = strtoul(argv[2], &end, 10);
    if (*end != '\0' || nl == 0 || nl > CONFIG_MAX_LISTENERS)
        fatalx("front: bad listener count");

    struct config *cfg = front_config_from_fd(FRONT_FD_BUNDLE, err, sizeof(err));
    if (cfg == NULL)
        fatalx("front: configuration bundle: %s", err);
    if (cfg->nlisteners != nl)
        fatalx("front: listener count mismatch");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        fatal("front: getrlimit");
    uint32_t conns = cfg->limits.max_connections, sessions = cfg->limits.max_sessions;
    int fit = front_fit_descriptors(&cfg->limits, (uint64_t)rl.rlim_cur);
    if (fit == -1)
        fatalx("front: RLIMIT_NOFILE is %llu, too few descriptors to serve anything; raise it "
               "(LimitNOFILE= in the unit, ulimit -n)",
               (unsigned long long)rl.rlim_cur);
    if (fit == 1)
        log_warn("descriptors_short nofile=%llu need=%llu max_connections=%u->%u "
                 "max_sessions=%u->%u note=\"the ceilings were lowered to fit; raise "
                 "RLIMIT_NOFILE (LimitNOFILE= in the unit, ulimit -n) to keep them\"",
                 (unsigned long long)rl.rlim_cur,
                 (unsigned long long)(FRONT_FD_RESERVE + (uint64_t)conns + 3 * (uint64_t)sessions),
                 conns, cfg->limits.max_connections, sessions, cfg->limits.max_sessions);

    int lfds[CONFIG_MAX_LISTENERS];
    for (size_t i = 0; i < nl; i++) {
        lfds[i] = FRONT_FD_LISTEN + (int)i;
        if (fcntl(lfds[i], F_SETFD, FD_CLOEXEC) == -1)
            fatal("front: listener fd");
    }
    if (fcntl(FRONT_FD_SOCK, F_SETFD, FD_CLOEXEC) == -1)
        fatal("front: privsep fd");
    int audit_fd = -1;
    if (cfg->audit_path != NULL) {
        audit_fd = FRONT_FD_LISTEN + (int)nl;
        if (fcntl(audit_fd, F_SETFD, FD_CLOEXEC) == -1)
            fatal("front: audit fd");
    }
    int code = front_run(cfg, FRONT_FD_SOCK, lfds, nl, audit_fd);
    config_free(cfg);
    return code;
}

static int cmd_check(const char *path, bool tools)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_load_file(path, err, sizeof(err));
    if (cfg == NULL || check_tls(cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 1;
    }
    size_t ntools = 0;
    for (size_t i = 0; i < cfg->nmanifests; i++)
        ntools += cfg->manifests[i].ntools;
    struct sandbox_features feat;
    struct sandbox_profile *prof = NULL;
    if (sandbox_setup(cfg, &feat, &prof, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 1;
    }
    printf("%s: ok (%zu listeners, %zu servers, %zu tools, %zu tenants, %zu API keys%s)\n",
           cfg->path, cfg->nlisteners, cfg->nmanifests, ntools, cfg->ntenants, cfg->napi_keys,
           cfg->has_anonymous ? ", anonymous access enabled" : "");
    warn_shared(cfg, stdout);
    for (size_t i = 0; i < cfg->nmanifests; i++)
        sandbox_profile_describe(&cfg->manifests[i], &prof[i], &feat, stdout);
    fflush(stdout);
    int code = tools ? pin_survey(cfg, &feat, prof, stdout) : 0;
    for (size_t i = 0; i < cfg->nmanifests; i++)
        sandbox_profile_free(&prof[i]);
    free(prof);
    sandbox_features_cleanup(&feat);
    config_free(cfg);
    return code;
}

/* mcpvisor pin SERVER [-c FILE] [--write]: exit 0 all pinned, 1 something differs, 2 error. */
static int cmd_pin(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG, *server = NULL;
    bool write = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--write") == 0) {
            write = true;
        } else if (server == NULL && argv[i][0] != '-') {
            server = argv[i];
        } else {
            usage(stderr);
            return PIN_EXIT_ERROR;
        }
    }
    if (server == NULL) {
        usage(stderr);
        return PIN_EXIT_ERROR;
    }
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_load_file(path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "mcpvisor pin: %s\n", err);
        return PIN_EXIT_ERROR;
    }
    struct sandbox_features feat;
    struct sandbox_profile *prof = NULL;
    int code = PIN_EXIT_ERROR;
    if (config_manifest_find(cfg, server) == NULL) {
        code = pin_run(cfg, NULL, NULL, server, write, stdout); /* says it is unknown */
    } else if (sandbox_setup(cfg, &feat, &prof, err, sizeof(err)) == -1) {
        fprintf(stderr, "mcpvisor pin: %s\n", err);
    } else {
        code = pin_run(cfg, &feat, prof, server, write, stdout);
        for (size_t i = 0; i < cfg->nmanifests; i++)
            sandbox_profile_free(&prof[i]);
        free(prof);
        sandbox_features_cleanup(&feat);
    }
    config_free(cfg);
    return code;
}

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"tenant", required_argument, NULL, 't'},
                                         {"user", required_argument, NULL, 'u'},
                                         {"agent", required_argument, NULL, 'a'},
                                         {"scope", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    const char *tenant = NULL, *user = NULL, *agent = NULL;
    cJSON *scopes = cJSON_CreateArray();
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            tenant = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'a':
            agent = optarg;
            break;
        case 's':
            cJSON_AddItemToArray(scopes, cJSON_CreateString(optarg));
            break;
        default:
            usage(stderr);
            cJSON_Delete(scopes);
            return 2;
        }
    }
    if (tenant == NULL || user == NULL || optind != argc) {
        fprintf(stderr, "mcpvisor keygen: --tenant and --user are required\n");
        cJSON_Delete(scopes);
        return 2;
    }
    char key[128], hex[UTIL_SHA256_HEX + 1];
    if (auth_keygen(key, sizeof(key)) == -1) {
        fprintf(stderr, "mcpvisor keygen: no randomness available\n");
        cJSON_Delete(scopes);
        return 1;
    }
    if (util_sha256_hex(key, strlen(key), hex) == -1) {
        fprintf(stderr, "mcpvisor keygen: SHA-256 unavailable\n");
        cJSON_Delete(scopes);
        return 1;
    }
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "sha256", hex);
    cJSON_AddStringToObject(rec, "tenant", tenant);
    cJSON_AddStringToObject(rec, "user", user);
    if (agent != NULL)
        cJSON_AddStringToObject(rec, "agent", agent);
    cJSON_AddItemToObject(rec, "scopes", scopes);
    char *text = cJSON_PrintUnformatted(rec);
    printf("%s\n%s\n", key, text != NULL ? text : "{}");
    fflush(stdout);
    cJSON_free(text);
    cJSON_Delete(rec);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    const char *cmd = "run";
    int argi = 1;

    log_init("parent", LOG_LEVEL_INFO);
    if (argc > 0 && argv[0] != NULL) /* the argv strings are contiguous, in order */
        spawn_set_title_area(argv[0], (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]));
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        argi = 2;
    }
    if (strcmp(cmd, "__front") == 0)
        return cmd_front(argc, argv);
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (strcmp(cmd, "pin") == 0)
        return cmd_pin(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return audit_cli(argc - 2, argv + 2, stdout, stderr);
    if (strcmp(cmd, "version") == 0) {
        printf("mcpvisor %s\n", MCPVISOR_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || (argc > 1 && strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    bool tools = true;
    for (; argi < argc; argi++) {
        if (strcmp(argv[argi], "-c") == 0 && argi + 1 < argc) {
            path = argv[++argi];
        } else if (strcmp(cmd, "check") == 0 && strcmp(argv[argi], "--no-tools") == 0) {
            tools = false;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(path);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(path, tools);
    usage(stderr);
    return 2;
}
