/* Shared by the attack programs: report what was tried and what the kernel answered.
 * Contract with tests/attacks/harness.py: exit 0 means "I believe I got through",
 * 1 means "blocked", 2 means "usage or setup error" (never counted as either). */
#ifndef ATTACK_COMMON_H
#define ATTACK_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOT_THROUGH 0
#define BLOCKED 1
#define SETUP 2

static inline int report(const char *what, long rc)
{
    if (rc < 0) {
        printf("%s: blocked: %s\n", what, strerror(errno));
        fflush(stdout);
        return BLOCKED;
    }
    printf("%s: got through (%ld)\n", what, rc);
    fflush(stdout);
    return GOT_THROUGH;
}

static inline void die_setup(const char *what)
{
    printf("setup failed: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(SETUP);
}

/* also the banner the harness looks for: without it the program never ran */
static inline void need_args(int argc, char **argv, int n, const char *usage)
{
    static int started;
    if (!started++) {
        printf("attack-start: %s\n", argc > 1 ? argv[1] : "");
        fflush(stdout);
    }
    if (argc < n) {
        fprintf(stderr, "usage: %s\n", usage);
        exit(SETUP);
    }
}

/* the i386 entry from an x86_64 process: i386 numbers, arguments in ebx, ecx, edx, esi, edi;
 * pointers are truncated to 32 bits, so what they point at must live below 4 GiB */
static inline long int80_5(long nr, long a, long b, long c, long d, long e)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

static inline long int80(long nr, long a, long b, long c, long d)
{
    return int80_5(nr, a, b, c, d, 0);
}

static inline long sys_result(long ret)
{
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}
#endif
