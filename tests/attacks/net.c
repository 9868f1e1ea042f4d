/* Sending to an address the policy forbids: `net OP ADDR PORT [ARGS]`.  Every attempt carries the
 * payload "attack <OP>\n"; the test's peer on ADDR records what arrives.
 *   tcp_connect, tcp_fastopen (sendto with MSG_FASTOPEN connects), tcp_fastopen_mmsg (the same
 *   through sendmmsg, whose flags are its fourth argument), udp_sendto, udp_sendmsg,
 *   udp_sendmmsg, udp_connect: the plain carriers of an address (ADDR v4 or v6)
 *   mapped           ADDR (IPv4) reached as ::ffff:ADDR from an AF_INET6 socket
 *   udp_redirect     connect to ARG (allowed), then sendto ADDR: sendto's address wins
 *   long_addrlen     connect with addrlen 128 (valid sockaddr_in, trailing garbage)
 *   bad_pointers     connect/sendto with unmapped and straddling pointers, then a real connect
 *   unspec           AF_UNSPEC connect carrying ADDR's bytes, then send
 *   raw_hdrincl      a raw IPPROTO_RAW packet to 127.0.0.1 whose IP header says ADDR
 *   packet           an AF_PACKET datagram on lo whose IP header says ADDR
 *   source_route    a datagram to ARG (allowed) with a loose source route through ADDR: the
 *                    packet's first hop, hence its IP destination, is ADDR
 *   cmsg_route       the same route given per datagram, in sendmsg's IP_RETOPTS control message
 *   fd_swap          a thread flips descriptor 50 between a unix and an INET datagram socket
 *                    while main sends to ADDR through it for ARG seconds (a check of the
 *                    socket that lets the kernel run the call looks at one, the kernel at the
 *                    other)
 *   fd_swap_proc     the same flips from a process sharing the descriptor table (clone
 *                    with CLONE_FILES): the sender is its thread group's one thread
 *   race             a thread flips the sockaddr between ARG (allowed) and ADDR; main sends for
 *                    ARG2 seconds, after moving itself into the cgroup whose cgroup.procs is
 *                    ARG3 when given (out of the cgroup that holds the destination programs) */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static char payload[128];
static size_t plen;

union sa {
    struct sockaddr s;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr_storage st;
};

static socklen_t make_addr(union sa *u, const char *addr, int port)
{
    memset(u, 0, sizeof *u);
    if (inet_pton(AF_INET, addr, &u->v4.sin_addr) == 1) {
        u->v4.sin_family = AF_INET;
        u->v4.sin_port = htons(port);
        return sizeof u->v4;
    }
    if (inet_pton(AF_INET6, addr, &u->v6.sin6_addr) == 1) {
        u->v6.sin6_family = AF_INET6;
        u->v6.sin6_port = htons(port);
        return sizeof u->v6;
    }
    die_setup("address");
    return 0;
}

static int sock(int family, int type)
{
    int s = socket(family, type, 0);
    if (s < 0)
        die_setup("socket");
    return s;
}

static int connect_send(const char *op, int s, union sa *u, socklen_t len)
{
    if (syscall(SYS_connect, s, &u->s, len) < 0)
        return report(op, -1);
    return report(op, send(s, payload, plen, 0));
}

static uint16_t csum(const void *p, size_t n)
{
    const uint16_t *w = p;
    uint32_t sum = 0;
    for (; n > 1; n -= 2)
        sum += *w++;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* an IPv4 + UDP packet to ADDR:PORT (UDP checksum 0: none) from 198.51.100.7: the input route a
 * packet socket's frame takes drops loopback and local sources as martians */
static size_t ip_packet(unsigned char *buf, struct in_addr dst, int port)
{
    struct iphdr *ip = (struct iphdr *)buf;
    struct udphdr *udp = (struct udphdr *)(buf + sizeof *ip);
    size_t len = sizeof *ip + sizeof *udp + plen;
    memset(buf, 0, len);
    ip->version = 4, ip->ihl = 5, ip->ttl = 64, ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)len);
    ip->saddr = htonl(0xc6336407);  /* 198.51.100.7 */
    ip->daddr = dst.s_addr;
    ip->check = csum(ip, sizeof *ip);
    udp->source = htons(40000), udp->dest = htons(port);
    udp->len = htons((uint16_t)(sizeof *udp + plen));
    memcpy(buf + sizeof *ip + sizeof *udp, payload, plen);
    return len;
}

static union sa race_addr;
static union sa race_ok, race_no;
static atomic_int race_stop;

static int swap_unix, swap_inet;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Send the payload through `fd` to `to` (read afresh at every call: a thread may be flipping
 * it) for `seconds`; report as `op` */
static int send_for(const char *op, int fd, const struct sockaddr *to, socklen_t len,
                    double seconds)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long tries = 0, sent = 0;
    do {
        tries++;
        if (syscall(SYS_sendto, fd, payload, plen, 0, to, len) >= 0)
            sent++;
    } while (since(&t0) < seconds);
    /* only the peer knows which address got the datagrams */
    printf("%s: %ld tries, %ld sent\n", op, tries, sent);
    return sent ? GOT_THROUGH : BLOCKED;
}

/* send_for while the thread `flipper` runs, then stop it */
static int send_while(const char *op, void *(*flipper)(void *), int fd,
                      const struct sockaddr *to, socklen_t len, double seconds)
{
    pthread_t th;
    pthread_create(&th, NULL, flipper, NULL);
    int rc = send_for(op, fd, to, len, seconds);
    atomic_store(&race_stop, 1);
    pthread_join(th, NULL);
    return rc;
}

/* a unix and an INET datagram socket, the unix one at descriptor 50 */
static void swap_sockets(int fam)
{
    swap_unix = socket(AF_UNIX, SOCK_DGRAM, 0);
    swap_inet = sock(fam, SOCK_DGRAM);
    if (swap_unix < 0 || dup2(swap_unix, 50) < 0)
        die_setup("fd_swap sockets");
}

static void *swap_flip(void *arg)
{
    (void)arg;
    while (!atomic_load(&race_stop)) {
        dup2(swap_inet, 50);
        dup2(swap_unix, 50);
    }
    return NULL;
}

static void *race_flip(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&race_stop); i++)
        memcpy(&race_addr, i & 1 ? &race_no : &race_ok, sizeof race_addr);
    return NULL;
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 4, "net OP ADDR PORT [ARG [ARG2]]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *op = argv[1], *addr = argv[2], *arg = argc > 4 ? argv[4] : NULL;
    int port = atoi(argv[3]);
    plen = (size_t)snprintf(payload, sizeof payload, "attack %s\n", op);
    union sa u;
    socklen_t len = make_addr(&u, addr, port);
    int fam = u.s.sa_family;
#define IS(name) (strcmp(op, name) == 0)
    if (IS("tcp_connect"))
        return connect_send(op, sock(fam, SOCK_STREAM), &u, len);
    if (IS("udp_connect"))
        return connect_send(op, sock(fam, SOCK_DGRAM), &u, len);
    if (IS("tcp_fastopen"))
        return report(op, syscall(SYS_sendto, sock(fam, SOCK_STREAM), payload, plen,
                                  MSG_FASTOPEN, &u.s, len));
    if (IS("udp_sendto"))
        return report(op, syscall(SYS_sendto, sock(fam, SOCK_DGRAM), payload, plen, 0, &u.s,
                                  len));
    if (IS("tcp_fastopen_mmsg")) {
        struct iovec iov = {payload, plen};
        struct mmsghdr mm = {.msg_hdr = {.msg_name = &u, .msg_namelen = len, .msg_iov = &iov,
                                         .msg_iovlen = 1}};
        return report(op, syscall(SYS_sendmmsg, sock(fam, SOCK_STREAM), &mm, 1, MSG_FASTOPEN));
    }
    if (IS("udp_sendmsg") || IS("udp_sendmmsg")) {
        struct iovec iov = {payload, plen};
        struct mmsghdr mm = {.msg_hdr = {.msg_name = &u, .msg_namelen = len, .msg_iov = &iov,
                                         .msg_iovlen = 1}};
        int s = sock(fam, SOCK_DGRAM);
        if (IS("udp_sendmsg"))
            return report(op, syscall(SYS_sendmsg, s, &mm.msg_hdr, 0));
        return report(op, syscall(SYS_sendmmsg, s, &mm, 1, 0));
    }
    if (IS("mapped")) {
        union sa m;
        memset(&m, 0, sizeof m);
        m.v6.sin6_family = AF_INET6;
        m.v6.sin6_port = htons(port);
        m.v6.sin6_addr.s6_addr[10] = m.v6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&m.v6.sin6_addr.s6_addr[12], &u.v4.sin_addr, 4);
        return connect_send(op, sock(AF_INET6, SOCK_STREAM), &m, sizeof m.v6);
    }
    if (IS("udp_redirect")) {
        union sa ok;
        socklen_t oklen = make_addr(&ok, arg, port);
        int s = sock(fam, SOCK_DGRAM);
        if (syscall(SYS_connect, s, &ok.s, oklen) < 0)
            die_setup("connect to the allowed peer");
        return report(op, syscall(SYS_sendto, s, payload, plen, 0, &u.s, len));
    }
    if (IS("long_addrlen")) {
        union {
            union sa u;
            unsigned char pad[128];
        } big;
        memset(&big, 0xa5, sizeof big);
        memcpy(&big.u, &u, len);
        return connect_send(op, sock(fam, SOCK_STREAM), &big.u, sizeof big);
    }
    if (IS("bad_pointers")) {
        /* a page whose second half is unmapped: a sockaddr straddling the edge */
        char *pg = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (pg == MAP_FAILED || munmap(pg + 4096, 4096) < 0)
            die_setup("mmap");
        char *edge = pg + 4096 - 8;
        memcpy(edge, &u, 8);
        int s = sock(fam, SOCK_STREAM);
        void *bad[] = {(void *)1, pg + 4096, edge, (void *)-1L};
        for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
            long rc = syscall(SYS_connect, s, bad[i], len);
            printf("connect(%p): %s\n", bad[i], rc < 0 ? strerror(errno) : "connected?!");
            rc = syscall(SYS_sendto, sock(fam, SOCK_DGRAM), payload, plen, 0, bad[i], len);
            printf("sendto(%p): %s\n", bad[i], rc < 0 ? strerror(errno) : "sent?!");
        }
        /* the tracer must still be there and still judge */
        return connect_send(op, s, &u, len);
    }
    if (IS("unspec")) {
        int s = sock(fam, SOCK_DGRAM);
        u.s.sa_family = AF_UNSPEC;
        long rc = syscall(SYS_connect, s, &u.s, len);
        printf("connect(AF_UNSPEC): %s\n", rc < 0 ? strerror(errno) : "ok");
        return report(op, send(s, payload, plen, 0));
    }
    if (IS("raw_hdrincl")) {
        int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
        if (s < 0)
            return report("socket(SOCK_RAW)", -1);
        unsigned char pkt[256];
        size_t n = ip_packet(pkt, u.v4.sin_addr, port);
        union sa lo;
        make_addr(&lo, "127.0.0.1", port);
        return report(op, syscall(SYS_sendto, s, pkt, n, 0, &lo.s, sizeof lo.v4));
    }
    if (IS("packet")) {
        int s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
        if (s < 0)
            return report("socket(AF_PACKET)", -1);
        unsigned char pkt[256];
        size_t n = ip_packet(pkt, u.v4.sin_addr, port);
        struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                                 .sll_ifindex = (int)if_nametoindex("lo"), .sll_halen = 6};
        return report(op, syscall(SYS_sendto, s, pkt, n, 0, &ll, sizeof ll));
    }
    if (IS("source_route")) {
        union sa ok;
        socklen_t oklen = make_addr(&ok, arg, port);
        int s = sock(AF_INET, SOCK_DGRAM);
        /* IPOPT_LSRR: type, length, pointer, one hop; a NOP pads to 8 bytes */
        unsigned char opt[8] = {0x83, 7, 4, 0, 0, 0, 0, 1};
        memcpy(opt + 3, &u.v4.sin_addr, 4);
        if (setsockopt(s, IPPROTO_IP, IP_OPTIONS, opt, sizeof opt) < 0)
            return report("setsockopt(IP_OPTIONS)", -1);
        return report(op, syscall(SYS_sendto, s, payload, plen, 0, &ok.s, oklen));
    }
    if (IS("cmsg_route")) {
        union sa ok;
        socklen_t oklen = make_addr(&ok, arg, port);
        unsigned char opt[8] = {0x83, 7, 4, 0, 0, 0, 0, 1};
        memcpy(opt + 3, &u.v4.sin_addr, 4);
        union {
            struct cmsghdr h;
            unsigned char buf[CMSG_SPACE(sizeof opt)];
        } control;
        memset(&control, 0, sizeof control);
        control.h.cmsg_level = IPPROTO_IP;
        control.h.cmsg_type = IP_RETOPTS;
        control.h.cmsg_len = CMSG_LEN(sizeof opt);
        memcpy(CMSG_DATA(&control.h), opt, sizeof opt);
        struct iovec iov = {payload, plen};
        struct msghdr mh = {.msg_name = &ok, .msg_namelen = oklen, .msg_iov = &iov,
                            .msg_iovlen = 1, .msg_control = &control,
                            .msg_controllen = sizeof control};
        return report(op, syscall(SYS_sendmsg, sock(AF_INET, SOCK_DGRAM), &mh, 0));
    }
    if (IS("fd_swap")) {
        need_args(argc, argv, 5, "net fd_swap FORBIDDEN PORT SECONDS");
        swap_sockets(fam);
        return send_while(op, swap_flip, 50, &u.s, len, atof(argv[4]));
    }
    if (IS("fd_swap_proc")) {
        /* the same swap from another process that shares the descriptor table (clone with
         * CLONE_FILES, without CLONE_THREAD): main stays the one thread of its group */
        need_args(argc, argv, 5, "net fd_swap_proc FORBIDDEN PORT SECONDS");
        swap_sockets(fam);
        double seconds = atof(argv[4]);
        long child = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        if (child < 0)
            return report("clone(CLONE_FILES)", child);
        if (child == 0) {
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            while (since(&t0) < seconds + 1) {
                dup2(swap_inet, 50);
                dup2(swap_unix, 50);
            }
            _exit(0);
        }
        int rc = send_for(op, 50, &u.s, len, seconds);
        kill((pid_t)child, SIGKILL);
        waitpid((pid_t)child, NULL, 0);
        return rc;
    }
    if (IS("race")) {
        need_args(argc, argv, 6, "net race FORBIDDEN PORT ALLOWED SECONDS [CGROUP_PROCS]");
        if (argc > 6) {
            /* first leave the cgroup that holds the kernel's destination programs */
            int fd = open(argv[6], O_WRONLY);
            if (fd < 0 || write(fd, "0", 1) != 1)
                printf("escape: %s: %s\n", argv[6], strerror(errno));
            else
                printf("escape: now in the cgroup of %s\n", argv[6]);
            if (fd >= 0)
                close(fd);
        }
        make_addr(&race_ok, arg, port);
        race_no = u;
        race_addr = race_ok;
        return send_while(op, race_flip, sock(fam, SOCK_DGRAM), &race_addr.s, len,
                          atof(argv[5]));
    }
#undef IS
    fprintf(stderr, "net: unknown op %s\n", op);
    return SETUP;
}
