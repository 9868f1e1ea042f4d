/* Other doors into the kernel: the i386 entry (`int 0x80`, i386 numbers, 32-bit pointers) and
 * x32 (nr | 0x40000000) from an x86_64 process.  `entry int80 OP PATH [PATH2]`,
 * `entry int80 connect|socketcall|sendto ADDR PORT`, `entry x32 open PATH`,
 * `entry int80 socket_race FAMILY TYPE SECONDS`: a thread flips socketcall(SOCKET)'s argument
 * block in memory between (AF_INET, SOCK_DGRAM) and (FAMILY, TYPE) while the main thread makes
 * the call; got through when a socket of FAMILY and TYPE comes back. `entry int80
 * socketcall_regs x`: exit 0 when socketcall(SOCKET) kept every register but eax. */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

/* i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl) */
enum {
    I386_OPEN = 5, I386_LINK = 9, I386_UNLINK = 10, I386_CREAT = 8, I386_CHMOD = 15,
    I386_RENAME = 38, I386_MKDIR = 39, I386_RMDIR = 40, I386_SYMLINK = 83, I386_TRUNCATE = 92,
    I386_SOCKETCALL = 102, I386_SETXATTR = 226, I386_CHOWN32 = 212, I386_OPENAT = 295,
    I386_MKDIRAT = 296, I386_SOCKET = 359, I386_CONNECT = 362,
};
#define I386_O_CREAT 0100
#define I386_O_WRONLY 01
#define AT_FDCWD_32 (-100)

/* int 0x80 truncates pointers to 32 bits: everything it reads lives below 4 GiB */
static char *low;
static long lo(const char *s)
{
    static size_t used;
    char *p = low + used;
    size_t n = strlen(s) + 1;
    memcpy(p, s, n);
    used += (n + 15) & ~15UL;
    return (long)p;
}

static int file_op(const char *op, const char *a, const char *b)
{
#define IS(name) (strcmp(op, name) == 0)
    long r;
    if (IS("open"))
        r = int80(I386_OPEN, lo(a), I386_O_WRONLY | I386_O_CREAT, 0644, 0);
    else if (IS("openat"))
        r = int80(I386_OPENAT, AT_FDCWD_32, lo(a), I386_O_WRONLY | I386_O_CREAT, 0644);
    else if (IS("creat"))
        r = int80(I386_CREAT, lo(a), 0644, 0, 0);
    else if (IS("mkdir"))
        r = int80(I386_MKDIR, lo(a), 0755, 0, 0);
    else if (IS("mkdirat"))
        r = int80(I386_MKDIRAT, AT_FDCWD_32, lo(a), 0755, 0);
    else if (IS("unlink"))
        r = int80(I386_UNLINK, lo(a), 0, 0, 0);
    else if (IS("rmdir"))
        r = int80(I386_RMDIR, lo(a), 0, 0, 0);
    else if (IS("rename"))
        r = int80(I386_RENAME, lo(a), lo(b), 0, 0);
    else if (IS("link"))
        r = int80(I386_LINK, lo(a), lo(b), 0, 0);
    else if (IS("symlink"))
        r = int80(I386_SYMLINK, lo(a), lo(b), 0, 0);
    else if (IS("chmod"))
        r = int80(I386_CHMOD, lo(a), 0600, 0, 0);
    else if (IS("chown"))
        r = int80(I386_CHOWN32, lo(a), 4242, 4242, 0);
    else if (IS("truncate"))
        r = int80(I386_TRUNCATE, lo(a), 0, 0, 0);
    else if (IS("setxattr"))
        r = int80_5(I386_SETXATTR, lo(a), lo("trusted.attack"), lo("x"), 1, 0);
    else {
        fprintf(stderr, "entry: unknown op %s\n", op);
        return SETUP;
    }
#undef IS
    r = sys_result(r);
    if (r >= 0 && (strcmp(op, "open") == 0 || strcmp(op, "openat") == 0 ||
                   strcmp(op, "creat") == 0))
        r = write((int)r, "attack\n", 7);
    return report(op, r);
}

static int net_op(const char *op, const char *addr, int port)
{
    struct sockaddr_in *sa = (struct sockaddr_in *)(low + 2048);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
        die_setup("inet_pton");
    char *msg = low + 2100;
    strcpy(msg, "attack\n");
    unsigned *args = (unsigned *)(low + 2200);
    long fd;
    if (strcmp(op, "socketcall_connect") == 0 || strcmp(op, "socketcall_sendto") == 0) {
        int dgram = strcmp(op, "socketcall_sendto") == 0;
        args[0] = AF_INET, args[1] = dgram ? SOCK_DGRAM : SOCK_STREAM, args[2] = 0;
        fd = sys_result(int80(I386_SOCKETCALL, 1 /* SYS_SOCKET */, (long)args, 0, 0));
        if (fd < 0)
            return report("socketcall(SOCKET)", fd);
        if (!dgram) {
            args[0] = (unsigned)fd, args[1] = (unsigned)(long)sa, args[2] = sizeof *sa;
            long r = sys_result(int80(I386_SOCKETCALL, 3 /* SYS_CONNECT */, (long)args, 0, 0));
            if (r < 0)
                return report(op, r);
            return report(op, write((int)fd, msg, 7));
        }
        args[0] = (unsigned)fd, args[1] = (unsigned)(long)msg, args[2] = 7, args[3] = 0;
        args[4] = (unsigned)(long)sa, args[5] = sizeof *sa;
        return report(op, sys_result(int80(I386_SOCKETCALL, 11 /* SYS_SENDTO */, (long)args,
                                           0, 0)));
    }
    if (strcmp(op, "connect") == 0) {
        fd = sys_result(int80(I386_SOCKET, AF_INET, SOCK_STREAM, 0, 0));
        if (fd < 0)
            return report("socket", fd);
        long r = sys_result(int80(I386_CONNECT, fd, (long)sa, sizeof *sa, 0));
        if (r < 0)
            return report(op, r);
        return report(op, write((int)fd, msg, 7));
    }
    fprintf(stderr, "entry: unknown op %s\n", op);
    return SETUP;
}

static volatile unsigned *race_block;
static unsigned race_family, race_type;
static atomic_int race_stop;

static void *flip_block(void *unused)
{
    (void)unused;
    /* one 8-byte store flips family and type together: the kernel never reads a torn pair */
    volatile unsigned long *pair = (volatile unsigned long *)race_block;
    unsigned long allowed = AF_INET | (unsigned long)SOCK_DGRAM << 32;
    unsigned long wanted = race_family | (unsigned long)race_type << 32;
    for (unsigned i = 0; !atomic_load(&race_stop); i++)
        *pair = i & 1 ? wanted : allowed;
    return NULL;
}

static int socket_race(int family, int type, int seconds)
{
    race_block = (unsigned *)(low + 4096);
    race_block[0] = AF_INET, race_block[1] = SOCK_DGRAM, race_block[2] = 0;
    race_family = (unsigned)family, race_type = (unsigned)type;
    pthread_t flipper;
    if (pthread_create(&flipper, NULL, flip_block, NULL))
        die_setup("pthread_create");
    time_t end = time(NULL) + seconds;
    long tries = 0, refused = 0;
    int got = 0;
    while (!got && time(NULL) < end) {
        long fd = sys_result(int80(I386_SOCKETCALL, 1 /* SYS_SOCKET */, (long)race_block, 0, 0));
        tries++;
        if (fd < 0) {
            refused++;
            continue;
        }
        int domain = 0, stype = 0;
        socklen_t n = sizeof domain;
        getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &n);
        n = sizeof stype;
        getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &stype, &n);
        got = domain == family && stype == type;
        close((int)fd);
    }
    atomic_store(&race_stop, 1);
    pthread_join(flipper, NULL);
    printf("socketcall(SOCKET) race: %ld tries, %ld refused\n", tries, refused);
    if (got) {
        printf("socket_race: got through: a socket of family %d type %d\n", family, type);
        return GOT_THROUGH;
    }
    printf("socket_race: blocked\n");
    return BLOCKED;
}

/* int 0x80 changes eax alone: socketcall(SOCKET) made under a tracer that rewrites it into the
 * direct call must leave the other registers as they were */
static int socketcall_regs(void)
{
    unsigned *blk = (unsigned *)(low + 8192);
    blk[0] = AF_INET, blk[1] = SOCK_DGRAM, blk[2] = 0;
    register long rax __asm__("rax") = I386_SOCKETCALL;
    register long rbx __asm__("rbx") = 1 /* SYS_SOCKET */;
    register long rcx __asm__("rcx") = (long)blk;
    register long rdx __asm__("rdx") = 0x1111;
    register long rsi __asm__("rsi") = 0x2222;
    register long rdi __asm__("rdi") = 0x3333;
    register long r12 __asm__("r12");
    __asm__ volatile("push %%rbp\n\tmov $0x4444, %%rbp\n\tint $0x80\n\t"
                     "mov %%rbp, %%r12\n\tpop %%rbp"
                     : "+r"(rax), "+r"(rbx), "+r"(rcx), "+r"(rdx), "+r"(rsi), "+r"(rdi),
                       "=r"(r12)
                     :
                     : "memory", "r8", "r9", "r10", "r11");
    printf("socketcall_regs: eax %ld ebx %#lx ecx %s edx %#lx esi %#lx edi %#lx ebp %#lx\n",
           rax, rbx, rcx == (long)blk ? "kept" : "changed", rdx, rsi, rdi, r12);
    if (rax < 0)
        return SETUP;
    return rbx == 1 && rcx == (long)blk && rdx == 0x1111 && rsi == 0x2222 && rdi == 0x3333 &&
           r12 == 0x4444 ? GOT_THROUGH : BLOCKED;
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 4, "entry int80|x32 OP ARGS...");
    setvbuf(stdout, NULL, _IOLBF, 0);
    low = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
               -1, 0);
    if (low == MAP_FAILED)
        die_setup("mmap(MAP_32BIT)");
    if (strcmp(argv[1], "x32") == 0) {
        /* x32 open is the x86_64 number with __X32_SYSCALL_BIT */
        long r = syscall(0x40000000L | 2, argv[3], O_WRONLY | O_CREAT, 0644);
        if (r < 0 && errno == ENOSYS)
            printf("x32: this kernel has no x32 entry\n");
        return report("x32 open(O_CREAT)", r);
    }
    if (strcmp(argv[1], "int80") != 0) {
        fprintf(stderr, "entry: unknown entry %s\n", argv[1]);
        return SETUP;
    }
    const char *op = argv[2];
    if (strcmp(op, "socketcall_regs") == 0)
        return socketcall_regs();
    if (strcmp(op, "socket_race") == 0) {
        need_args(argc, argv, 6, "entry int80 socket_race FAMILY TYPE SECONDS");
        return socket_race(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    }
    if (strcmp(op, "connect") == 0 || strncmp(op, "socketcall_", 11) == 0) {
        need_args(argc, argv, 5, "entry int80 connect ADDR PORT");
        return net_op(op, argv[3], atoi(argv[4]));
    }
    return file_op(op, argv[3], argc > 4 ? argv[4] : NULL);
}
