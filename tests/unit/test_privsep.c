/*
 * test_privsep.c — the spawner ↔ front message protocol (supervisor/privsep.c) over a real
 * SOCK_SEQPACKET socketpair. The spawner is privileged: every malformed message must be refused
 * with EPROTO, and no descriptor a peer slipped in may stay open in the receiver.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privsep.h"
#include "testchild.h"

struct pair {
    int a, b; /* a sends, b receives */
};

static int setup(void **state)
{
    static struct pair p;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
        return -1;
    p.a = sv[0];
    p.b = sv[1];
    *state = &p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    if (p->a != -1)
        close(p->a);
    close(p->b);
    return 0;
}

/* Open descriptors of this process (the directory stream's own fd included, every time). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void send_raw(int sock, const void *buf, size_t len)
{
    assert_int_equal(send(sock, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Sends `len` bytes with `nfds` descriptors attached, bypassing privsep_send's checks. */
static void send_raw_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    assert_true(nfds > 0 && nfds <= 8);
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.buf;
    mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

static void expect_eproto(int sock)
{
    union privsep_msg m;
    int fds[3] = {-1, -1, -1};
    size_t nfds = 99;
    errno = 0;
    assert_int_equal(privsep_recv(sock, &m, fds, &nfds), -1);
    assert_int_equal(errno, EPROTO);
    assert_int_equal(fds[0], -1);
    assert_int_equal(fds[1], -1);
    assert_int_equal(fds[2], -1);
}

/* Sends msg through privsep_send and receives it back unchanged, without descriptors. */
static void round_trip(struct pair *p, const union privsep_msg *msg)
{
    union privsep_msg got;
    int fds[3] = {-1, -1, -1};
    size_t nfds = 99;
    size_t size = privsep_size(msg->type);
    assert_true(size > 0);
    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(privsep_send(p->a, msg, NULL, 0), 0);
    assert_int_equal(privsep_recv(p->b, &got, fds, &nfds), 1);
    assert_int_equal(nfds, 0);
    assert_int_equal(fds[0], -1);
    assert_memory_equal(&got, msg, size);
}

/* ---- sizes --------------------------------------------------------------------------------- */

static void every_type_has_its_exact_size(void **state)
{
    (void)state;
    assert_int_equal(privsep_size(PRIVSEP_SPAWN), sizeof(struct privsep_spawn));
    assert_int_equal(privsep_size(PRIVSEP_SPAWNED), sizeof(struct privsep_spawned));
    assert_int_equal(privsep_size(PRIVSEP_SPAWN_FAILED), sizeof(struct privsep_spawn_failed));
    assert_int_equal(privsep_size(PRIVSEP_EXITED), sizeof(struct privsep_exited));
    assert_int_equal(privsep_size(PRIVSEP_KILL), sizeof(struct privsep_kill));
    assert_int_equal(privsep_size(PRIVSEP_RELOAD), sizeof(struct privsep_reload));
    assert_int_equal(privsep_size(PRIVSEP_AUDIT_FD), sizeof(struct privsep_audit_fd));
    assert_int_equal(privsep_size(0), 0);
    assert_int_equal(privsep_size(8), 0);
    assert_int_equal(privsep_size(UINT32_MAX), 0);
}

/* ---- round trips --------------------------------------------------------------------------- */

/* RELOAD carries exactly one fd (the new configuration bundle), AUDIT_FD one (the reopened audit
 * log); without it the peer is broken. */
static void one_fd_message(uint32_t type)
{
    int sp[2], p[2];
    union privsep_msg m, got;
    int fds[3];
    size_t nfds = 9;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_int_equal(pipe(p), 0);
    memset(&m, 0, sizeof(m));
    m.type = type;
    assert_int_equal(privsep_send(sp[0], &m, &p[0], 1), 0);
    assert_int_equal(privsep_recv(sp[1], &got, fds, &nfds), 1);
    assert_int_equal(got.type, type);
    assert_int_equal(nfds, 1);
    assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    close(fds[0]);
    assert_int_equal(privsep_send(sp[0], &m, NULL, 0), 0);
    assert_int_equal(privsep_recv(sp[1], &got, fds, &nfds), -1);
    assert_int_equal(errno, EPROTO);
    close(p[0]);
    close(p[1]);
    close(sp[0]);
    close(sp[1]);
}

static void reload_carries_one_fd(void **state)
{
    (void)state;
    one_fd_message(PRIVSEP_RELOAD);
}

static void audit_fd_carries_one_fd(void **state)
{
    (void)state;
    one_fd_message(PRIVSEP_AUDIT_FD);
}

static void spawn_round_trip(void **state)
{
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.spawn.type = PRIVSEP_SPAWN;
    m.spawn.req = 0x0123456789abcdefULL;
    assert_int_equal(privsep_set_name(m.spawn.server, sizeof(m.spawn.server), "files"), 0);
    assert_int_equal(privsep_set_name(m.spawn.tenant, sizeof(m.spawn.tenant), "acme"), 0);
    round_trip(*state, &m);
}

static void spawn_failed_round_trip(void **state)
{
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.spawn_failed.type = PRIVSEP_SPAWN_FAILED;
    m.spawn_failed.err = EACCES;
    m.spawn_failed.req = 42;
    assert_int_equal(privsep_set_name(m.spawn_failed.step, sizeof(m.spawn_failed.step), "execve"),
                     0);
    round_trip(*state, &m);
}

static void exited_round_trip(void **state)
{
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.exited.type = PRIVSEP_EXITED;
    m.exited.pid = 12345;
    m.exited.status = 0;
    m.exited.signal = 9;
    round_trip(*state, &m);
}

static void kill_round_trip(void **state)
{
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.kill.type = PRIVSEP_KILL;
    m.kill.pid = 4242;
    round_trip(*state, &m);
}

static void messages_keep_their_boundaries(void **state)
{
    struct pair *p = *state;
    union privsep_msg k, e, got;
    memset(&k, 0, sizeof(k));
    memset(&e, 0, sizeof(e));
    k.kill.type = PRIVSEP_KILL;
    k.kill.pid = 1;
    e.exited.type = PRIVSEP_EXITED;
    e.exited.pid = 2;
    e.exited.status = 3;
    assert_int_equal(privsep_send(p->a, &k, NULL, 0), 0);
    assert_int_equal(privsep_send(p->a, &e, NULL, 0), 0);
    int fds[3];
    size_t nfds;
    assert_int_equal(privsep_recv(p->b, &got, fds, &nfds), 1);
    assert_int_equal(got.type, PRIVSEP_KILL);
    assert_int_equal(got.kill.pid, 1);
    assert_int_equal(privsep_recv(p->b, &got, fds, &nfds), 1);
    assert_int_equal(got.type, PRIVSEP_EXITED);
    assert_int_equal(got.exited.pid, 2);
    assert_int_equal(got.exited.status, 3);
}

static void spawned_carries_three_usable_cloexec_fds(void **state)
{
    struct pair *p = *state;
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(null >= 0);

    union privsep_msg m, got;
    memset(&m, 0, sizeof(m));
    m.spawned.type = PRIVSEP_SPAWNED;
    m.spawned.pid = 777;
    m.spawned.req = 99;
    int sent[3] = {in[1], out[0], null}; /* child's stdin, stdout, stderr as the front sees them */
    assert_int_equal(privsep_send(p->a, &m, sent, 3), 0);

    int fds[3] = {-1, -1, -1};
    size_t nfds = 0;
    assert_int_equal(privsep_recv(p->b, &got, fds, &nfds), 1);
    assert_int_equal(nfds, 3);
    assert_memory_equal(&got, &m, sizeof(struct privsep_spawned));
    for (int i = 0; i < 3; i++) {
        assert_true(fds[i] >= 0);
        assert_int_not_equal(fds[i], sent[0]);
        assert_int_not_equal(fds[i], sent[1]);
        assert_int_not_equal(fds[i], sent[2]);
        int fl = fcntl(fds[i], F_GETFD);
        assert_int_not_equal(fl, -1);
        assert_true(fl & FD_CLOEXEC);
    }

    /* In order, and the same open files: write through the received stdin end... */
    assert_int_equal(write(fds[0], "ping", 4), 4);
    char buf[8] = {0};
    assert_int_equal(read(in[0], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    /* ...read through the received stdout end... */
    assert_int_equal(write(out[1], "pong", 4), 4);
    assert_int_equal(read(fds[1], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);
    /* ...and the third is /dev/null. */
    struct stat a, b;
    assert_int_equal(fstat(null, &a), 0);
    assert_int_equal(fstat(fds[2], &b), 0);
    assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);

    for (int i = 0; i < 3; i++)
        close(fds[i]);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    close(null);
}

/* ---- protocol violations ------------------------------------------------------------------- */

static void message_shorter_than_its_type_is_eproto(void **state)
{
    struct pair *p = *state;
    struct privsep_spawn s;
    memset(&s, 0, sizeof(s));
    s.type = PRIVSEP_SPAWN;
    send_raw(p->a, &s, sizeof(struct privsep_kill));
    expect_eproto(p->b);
}

static void message_longer_than_its_type_is_eproto(void **state)
{
    struct pair *p = *state;
    struct privsep_spawn s;
    memset(&s, 0, sizeof(s));
    s.type = PRIVSEP_KILL;
    send_raw(p->a, &s, sizeof(struct privsep_kill) + 1);
    expect_eproto(p->b);
    send_raw(p->a, &s, sizeof(struct privsep_kill) + 8);
    expect_eproto(p->b);
}

static void message_longer_than_any_type_is_eproto(void **state)
{
    struct pair *p = *state;
    char big[4096];
    memset(big, 0, sizeof(big));
    uint32_t type = PRIVSEP_SPAWN;
    memcpy(big, &type, sizeof(type));
    send_raw(p->a, big, sizeof(big));
    expect_eproto(p->b);
    /* Also exactly one byte more than the largest message. */
    send_raw(p->a, big, sizeof(union privsep_msg) + 1);
    expect_eproto(p->b);
}

static void message_shorter_than_a_type_field_is_eproto(void **state)
{
    struct pair *p = *state;
    send_raw(p->a, "\x01\x00", 2);
    expect_eproto(p->b);
}

static void unknown_type_is_eproto(void **state)
{
    struct pair *p = *state;
    struct privsep_kill k = {.type = 0, .pid = 1};
    send_raw(p->a, &k, sizeof(k));
    expect_eproto(p->b);
    k.type = 99;
    send_raw(p->a, &k, sizeof(k));
    expect_eproto(p->b);
}

static void send_refuses_unknown_type_and_too_many_fds(void **state)
{
    struct pair *p = *state;
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 99;
    errno = 0;
    assert_int_equal(privsep_send(p->a, &m, NULL, 0), -1);
    assert_int_equal(errno, EINVAL);

    m.spawned.type = PRIVSEP_SPAWNED;
    int fds[4] = {0, 0, 0, 0};
    errno = 0;
    assert_int_equal(privsep_send(p->a, &m, fds, 4), -1);
    assert_int_equal(errno, EINVAL);

    /* Nothing reached the peer. */
    int fl = fcntl(p->b, F_GETFL);
    assert_int_equal(fcntl(p->b, F_SETFL, fl | O_NONBLOCK), 0);
    union privsep_msg got;
    int rfds[3];
    size_t nfds;
    errno = 0;
    assert_int_equal(privsep_recv(p->b, &got, rfds, &nfds), -1);
    assert_int_equal(errno, EAGAIN);
}

static void fds_on_a_type_without_fds_are_eproto_and_closed(void **state)
{
    struct pair *p = *state;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.kill.type = PRIVSEP_KILL;
    m.kill.pid = 1;
    assert_int_equal(privsep_send(p->a, &m, pp, 2), 0);
    int before = count_fds();
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);

    m.exited.type = PRIVSEP_EXITED;
    assert_int_equal(privsep_send(p->a, &m, pp, 1), 0);
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);
    close(pp[0]);
    close(pp[1]);
}

static void spawned_with_too_few_fds_is_eproto_and_closed(void **state)
{
    struct pair *p = *state;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.spawned.type = PRIVSEP_SPAWNED;
    m.spawned.pid = 5;
    assert_int_equal(privsep_send(p->a, &m, pp, 2), 0);
    int before = count_fds();
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);

    /* and with none at all */
    assert_int_equal(privsep_send(p->a, &m, NULL, 0), 0);
    expect_eproto(p->b);
    close(pp[0]);
    close(pp[1]);
}

static void spawned_with_too_many_fds_is_eproto_and_closed(void **state)
{
    struct pair *p = *state;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    struct privsep_spawned s = {.type = PRIVSEP_SPAWNED, .pid = 5, .req = 1};
    int six[6] = {pp[0], pp[1], pp[0], pp[1], pp[0], pp[1]};
    send_raw_fds(p->a, &s, sizeof(s), six, 6);
    int before = count_fds();
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);

    int four[4] = {pp[0], pp[1], pp[0], pp[1]};
    send_raw_fds(p->a, &s, sizeof(s), four, 4);
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);
    close(pp[0]);
    close(pp[1]);
}

static void fds_on_a_wrong_sized_spawned_are_eproto_and_closed(void **state)
{
    struct pair *p = *state;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    struct privsep_spawn big;
    memset(&big, 0, sizeof(big));
    big.type = PRIVSEP_SPAWNED;
    int three[3] = {pp[0], pp[1], pp[0]};
    send_raw_fds(p->a, &big, sizeof(big), three, 3);
    int before = count_fds();
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);

    /* Unknown type with fds, and an empty message with fds. */
    big.type = 77;
    send_raw_fds(p->a, &big, sizeof(struct privsep_kill), three, 3);
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);
    send_raw_fds(p->a, &big, 0, three, 1);
    expect_eproto(p->b);
    assert_int_equal(count_fds(), before);
    close(pp[0]);
    close(pp[1]);
}

/* ---- end of stream ------------------------------------------------------------------------- */

static void eof_returns_zero(void **state)
{
    struct pair *p = *state;
    close(p->a);
    p->a = -1;
    union privsep_msg m;
    int fds[3];
    size_t nfds = 99;
    assert_int_equal(privsep_recv(p->b, &m, fds, &nfds), 0);
    assert_int_equal(nfds, 0);
}

static void nothing_to_read_is_eagain(void **state)
{
    struct pair *p = *state;
    int fl = fcntl(p->b, F_GETFL);
    assert_int_equal(fcntl(p->b, F_SETFL, fl | O_NONBLOCK), 0);
    union privsep_msg m;
    int fds[3];
    size_t nfds;
    errno = 0;
    assert_int_equal(privsep_recv(p->b, &m, fds, &nfds), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- names --------------------------------------------------------------------------------- */

static void set_name_bounds(void **state)
{
    (void)state;
    char field[CONFIG_NAME_MAX];
    char name[CONFIG_NAME_MAX + 1];

    memset(field, 'X', sizeof(field));
    assert_int_equal(privsep_set_name(field, sizeof(field), "ab"), 0);
    assert_string_equal(field, "ab");
    /* The rest is zeroed: no stale bytes cross the process boundary. */
    for (size_t i = 2; i < sizeof(field); i++)
        assert_int_equal(field[i], 0);

    memset(name, 'n', CONFIG_NAME_MAX - 1);
    name[CONFIG_NAME_MAX - 1] = '\0'; /* 63 characters: the longest that fits */
    assert_int_equal(privsep_set_name(field, sizeof(field), name), 0);
    assert_string_equal(field, name);
    assert_int_equal(privsep_name_ok(field, sizeof(field)), 0);

    memset(field, 'X', sizeof(field));
    memset(name, 'n', CONFIG_NAME_MAX);
    name[CONFIG_NAME_MAX] = '\0'; /* 64 characters: no room for the NUL */
    assert_int_equal(privsep_set_name(field, sizeof(field), name), -1);
    assert_int_equal(privsep_set_name(field, sizeof(field), ""), -1);
    assert_int_equal(privsep_set_name(field, 1, "a"), -1);
}

static void name_ok_bounds(void **state)
{
    (void)state;
    char field[CONFIG_NAME_MAX];
    memset(field, 0, sizeof(field));
    assert_int_equal(privsep_name_ok(field, sizeof(field)), -1); /* empty */

    memcpy(field, "acme", 4);
    assert_int_equal(privsep_name_ok(field, sizeof(field)), 0);

    memset(field, 'a', sizeof(field)); /* no NUL anywhere */
    assert_int_equal(privsep_name_ok(field, sizeof(field)), -1);

    field[sizeof(field) - 1] = '\0'; /* NUL in the last byte only */
    assert_int_equal(privsep_name_ok(field, sizeof(field)), 0);

    /* A NUL just past the field does not count. */
    char wider[CONFIG_NAME_MAX + 1];
    memset(wider, 'a', sizeof(wider));
    wider[CONFIG_NAME_MAX] = '\0';
    assert_int_equal(privsep_name_ok(wider, CONFIG_NAME_MAX), -1);
}

/* The receiver out of descriptors (EMFILE): the kernel truncates the control message. The
 * message is one failed operation for the front, not a broken channel. */
static int lost_rx = -1; /* the receiving end, for the clean child */

static int receive_while_out_of_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 10;
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 11;
    while (open("/dev/null", O_RDONLY) != -1) /* fill every slot below the limit */
        ;
    if (errno != EMFILE)
        return 12;
    union privsep_msg got;
    int fds[3] = {-1, -1, -1};
    size_t nfds = 9;
    int r = privsep_recv(lost_rx, &got, fds, &nfds);
    if (r != PRIVSEP_LOST_FDS)
        return 13;
    if (nfds != 0 || got.type != PRIVSEP_SPAWNED || got.spawned.pid != 4242 || got.spawned.req != 7)
        return 14;
    /* the next message is received normally: the channel is intact */
    r = privsep_recv(lost_rx, &got, fds, &nfds);
    if (r != 1 || got.type != PRIVSEP_KILL || got.kill.pid != 4243)
        return 15;
    return 0;
}

static void spawned_without_room_for_its_fds_is_lost_fds(void **state)
{
    struct pair *p = *state;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    union privsep_msg m;
    memset(&m, 0, sizeof(m));
    m.spawned.type = PRIVSEP_SPAWNED;
    m.spawned.pid = 4242;
    m.spawned.req = 7;
    int sent[3] = {pp[0], pp[1], pp[0]};
    assert_int_equal(privsep_send(p->a, &m, sent, 3), 0);
    memset(&m, 0, sizeof(m));
    m.kill.type = PRIVSEP_KILL;
    m.kill.pid = 4243;
    assert_int_equal(privsep_send(p->a, &m, NULL, 0), 0);
    close(pp[0]);
    close(pp[1]);
    lost_rx = p->b;
    assert_int_equal(test_child_status(receive_while_out_of_fds), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type_has_its_exact_size),
        cmocka_unit_test(reload_carries_one_fd),
        cmocka_unit_test(audit_fd_carries_one_fd),
        T(spawn_round_trip),
        T(spawn_failed_round_trip),
        T(exited_round_trip),
        T(kill_round_trip),
        T(messages_keep_their_boundaries),
        T(spawned_carries_three_usable_cloexec_fds),
        T(spawned_without_room_for_its_fds_is_lost_fds),
        T(message_shorter_than_its_type_is_eproto),
        T(message_longer_than_its_type_is_eproto),
        T(message_longer_than_any_type_is_eproto),
        T(message_shorter_than_a_type_field_is_eproto),
        T(unknown_type_is_eproto),
        T(send_refuses_unknown_type_and_too_many_fds),
        T(fds_on_a_type_without_fds_are_eproto_and_closed),
        T(spawned_with_too_few_fds_is_eproto_and_closed),
        T(spawned_with_too_many_fds_is_eproto_and_closed),
        T(fds_on_a_wrong_sized_spawned_are_eproto_and_closed),
        T(eof_returns_zero),
        T(nothing_to_read_is_eagain),
        cmocka_unit_test(set_name_bounds),
        cmocka_unit_test(name_ok_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
