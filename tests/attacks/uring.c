/* io_uring: the kernel's workers perform the operations, so seccomp never sees the opcode.
 * `uring openat|mkdirat|unlinkat|renameat|symlinkat|linkat PATH [PATH2]`,
 * `uring connect ADDR PORT` (TCP, then a plain write of the payload). */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (r->fd < 0)
        return -1;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        die_setup("mmap of the rings");
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* submit one prepared SQE and return its result, errno-style */
static long submit(struct ring *r, struct io_uring_sqe *sqe)
{
    unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
    r->sqes[idx] = *sqe;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return -1;
    unsigned head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        die_setup("no completion");
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    if (res < 0) {
        errno = -res;
        return -1;
    }
    return res;
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 3, "uring OP ARGS...");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *op = argv[1], *a = argv[2], *b = argc > 3 ? argv[3] : NULL;
    struct ring r;
    if (ring_init(&r) < 0)
        return report("io_uring_setup", -1);
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    sqe.fd = AT_FDCWD;
    sqe.addr = (unsigned long)a;
#define IS(name) (strcmp(op, name) == 0)
    if (IS("openat")) {
        sqe.opcode = IORING_OP_OPENAT;
        sqe.open_flags = O_WRONLY | O_CREAT;
        sqe.len = 0644;
        long fd = submit(&r, &sqe);
        return report(op, fd < 0 ? fd : write((int)fd, "attack\n", 7));
    }
    if (IS("mkdirat")) {
        sqe.opcode = IORING_OP_MKDIRAT;
        sqe.len = 0755;
    } else if (IS("unlinkat")) {
        sqe.opcode = IORING_OP_UNLINKAT;
    } else if (IS("renameat") || IS("linkat")) {
        sqe.opcode = IS("renameat") ? IORING_OP_RENAMEAT : IORING_OP_LINKAT;
        sqe.len = AT_FDCWD;                      /* the new dirfd */
        sqe.addr2 = (unsigned long)b;
    } else if (IS("symlinkat")) {
        sqe.opcode = IORING_OP_SYMLINKAT;        /* addr: target, addr2: the new link */
        sqe.addr2 = (unsigned long)b;
    } else if (IS("connect")) {
        static struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_port = htons(atoi(b));
        if (inet_pton(AF_INET, a, &sa.sin_addr) != 1)
            die_setup("inet_pton");
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            die_setup("socket");
        sqe.opcode = IORING_OP_CONNECT;
        sqe.fd = s;
        sqe.addr = (unsigned long)&sa;
        sqe.off = sizeof sa;
        long rc = submit(&r, &sqe);
        return report(op, rc < 0 ? rc : write(s, "attack\n", 7));
    } else {
        fprintf(stderr, "uring: unknown op %s\n", op);
        return SETUP;
    }
#undef IS
    return report(op, submit(&r, &sqe));
}
