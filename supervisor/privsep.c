/*
 * privsep.c — framing of the spawner ↔ front messages. Pure I/O helpers: no allocation, no policy.
 * Why exact sizes and fatal truncation: the spawner is privileged, and a peer that can make it
 * misparse a message (or keep an fd it did not expect) is a peer that can steer it.
 */
#include "privsep.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

size_t privsep_size(uint32_t type)
{
    switch (type) {
    case PRIVSEP_SPAWN:
        return sizeof(struct privsep_spawn);
    case PRIVSEP_SPAWNED:
        return sizeof(struct privsep_spawned);
    case PRIVSEP_SPAWN_FAILED:
        return sizeof(struct privsep_spawn_failed);
    case PRIVSEP_EXITED:
        return sizeof(struct privsep_exited);
    case PRIVSEP_KILL:
        return sizeof(struct privsep_kill);
    case PRIVSEP_RELOAD:
        return sizeof(struct privsep_reload);
    case PRIVSEP_AUDIT_FD:
        return sizeof(struct privsep_audit_fd);
    default:
        return 0;
    }
}

int privsep_send(int sock, const union privsep_msg *msg, const int *fds, size_t nfds)
{
    size_t len = privsep_size(msg->type);
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (len == 0 || nfds > 3) {
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -1;
        if ((size_t)n != len) {
            errno = EPROTO;
            return -1;
        }
        return 0;
    }
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

int privsep_recv(int sock, union privsep_msg *msg, int fds[3], size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    char data[sizeof(union privsep_msg) + 1]; /* one spare byte detects oversize */
    struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    int got[4];
    size_t ngot = 0;
    ssize_t n;

    *nfds = 0;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n == -1 && errno == EINTR);
    if (n == -1)
        return -1;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0)) {
            close_all(got, ngot);
            errno = EPROTO;
            return -1;
        }
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (ngot < 4)
                got[ngot++] = fd;
            else
                close(fd);
        }
    }
    if (n == 0 && ngot == 0)
        return 0;
    if ((mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n < sizeof(uint32_t)) {
        close_all(got, ngot);
        errno = EPROTO;
        return -1;
    }
    uint32_t type;
    memcpy(&type, data, sizeof(type));
    size_t want = privsep_size(type);
    size_t want_fds = type == PRIVSEP_SPAWNED                              ? 3
                      : type == PRIVSEP_RELOAD || type == PRIVSEP_AUDIT_FD ? 1
                                                                           : 0;
    if ((mh.msg_flags & MSG_CTRUNC) != 0) {
        /* The data is whole; the descriptors could not all be installed here (EMFILE). Only a
         * message that carries descriptors can lose them; more than it carries filled our
         * buffer instead, and that is the peer's error. */
        close_all(got, ngot);
        if (want == 0 || (size_t)n != want || want_fds == 0 || ngot >= want_fds) {
            errno = EPROTO;
            return -1;
        }
        memcpy(msg, data, want);
        return PRIVSEP_LOST_FDS;
    }
    if (want == 0 || (size_t)n != want || ngot != want_fds) {
        close_all(got, ngot);
        errno = EPROTO;
        return -1;
    }
    memcpy(msg, data, want);
    for (size_t i = 0; i < ngot; i++)
        fds[i] = got[i];
    *nfds = ngot;
    return 1;
}

int privsep_set_name(char *field, size_t fieldlen, const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len >= fieldlen)
        return -1;
    memset(field, 0, fieldlen);
    memcpy(field, name, len);
    return 0;
}

int privsep_name_ok(const char *field, size_t fieldlen)
{
    return field[0] != '\0' && memchr(field, '\0', fieldlen) != NULL ? 0 : -1;
}
