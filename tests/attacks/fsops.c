/* One file-system-changing system call per invocation, issued raw (syscall(2)) so that the C
 * library cannot turn it into another call: `fsops OP ARGS...`.
 * Every call that can change a file system gets its own OP; the test judges the host side. */
#include "common.h"
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <utime.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static const char payload[] = "attack\n";

static int opath(const char *p)
{
    int fd = open(p, O_PATH | O_DIRECTORY);
    if (fd < 0)
        die_setup(p);
    return fd;
}

static int ordonly(const char *p)
{
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        die_setup(p);
    return fd;
}

/* a write through an fd the attack obtained: proves the fd is writable, not only opened */
static long write_through(const char *what, long fd)
{
    if (fd < 0)
        return report(what, fd);
    long n = write((int)fd, payload, sizeof payload - 1);
    return report(what, n);
}

static struct timespec past[2] = {{1000000, 0}, {1000000, 0}};

static int by_op(const char *op, int argc, char **argv)
{
    const char *a = argc > 2 ? argv[2] : NULL, *b = argc > 3 ? argv[3] : NULL;
    const char *c = argc > 4 ? argv[4] : NULL;
#define IS(name) (strcmp(op, name) == 0)
    if (IS("open_creat"))
        return write_through(op, syscall(SYS_open, a, O_WRONLY | O_CREAT, 0644));
    if (IS("creat"))
        return write_through(op, syscall(SYS_creat, a, 0644));
    if (IS("openat_creat"))  /* DIR NAME: relative to a dirfd */
        return write_through(op, syscall(SYS_openat, opath(a), b, O_WRONLY | O_CREAT, 0644));
    if (IS("openat2_creat")) {
        struct open_how how = {.flags = O_WRONLY | O_CREAT, .mode = 0644};
        return write_through(op, syscall(SYS_openat2, AT_FDCWD, a, &how, sizeof how));
    }
    if (IS("open_trunc"))
        return report(op, syscall(SYS_open, a, O_WRONLY | O_TRUNC));
    if (IS("open_append"))
        return write_through(op, syscall(SYS_open, a, O_WRONLY | O_APPEND));
    if (IS("open_rdwr"))
        return write_through(op, syscall(SYS_open, a, O_RDWR));
    if (IS("mkdir"))
        return report(op, syscall(SYS_mkdir, a, 0755));
    if (IS("mkdirat"))
        return report(op, syscall(SYS_mkdirat, opath(a), b, 0755));
    if (IS("mknod"))
        return report(op, syscall(SYS_mknod, a, S_IFIFO | 0644, 0));
    if (IS("mknodat"))
        return report(op, syscall(SYS_mknodat, opath(a), b, S_IFREG | 0644, 0));
    if (IS("unlink"))
        return report(op, syscall(SYS_unlink, a));
    if (IS("unlinkat"))
        return report(op, syscall(SYS_unlinkat, opath(a), b, 0));
    if (IS("rmdir"))
        return report(op, syscall(SYS_rmdir, a));
    if (IS("unlinkat_rmdir"))
        return report(op, syscall(SYS_unlinkat, opath(a), b, AT_REMOVEDIR));
    if (IS("rename"))
        return report(op, syscall(SYS_rename, a, b));
    if (IS("renameat"))
        return report(op, syscall(SYS_renameat, AT_FDCWD, a, AT_FDCWD, b));
    if (IS("renameat2"))
        return report(op, syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 0));
    if (IS("exchange"))
        return report(op, syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE));
    if (IS("link"))
        return report(op, syscall(SYS_link, a, b));
    if (IS("linkat"))
        return report(op, syscall(SYS_linkat, AT_FDCWD, a, AT_FDCWD, b, 0));
    if (IS("symlink"))
        return report(op, syscall(SYS_symlink, a, b));
    if (IS("symlinkat"))
        return report(op, syscall(SYS_symlinkat, a, AT_FDCWD, b));
    if (IS("chmod"))
        return report(op, syscall(SYS_chmod, a, 0600));
    if (IS("fchmodat"))
        return report(op, syscall(SYS_fchmodat, AT_FDCWD, a, 0600));
    if (IS("fchmodat2"))
        return report(op, syscall(SYS_fchmodat2, AT_FDCWD, a, 0600, 0));
    if (IS("fchmod"))  /* through a read-only descriptor: chmod needs no write access */
        return report(op, syscall(SYS_fchmod, ordonly(a), 0600));
    if (IS("chown"))
        return report(op, syscall(SYS_chown, a, 4242, 4242));
    if (IS("lchown"))
        return report(op, syscall(SYS_lchown, a, 4242, 4242));
    if (IS("fchownat"))
        return report(op, syscall(SYS_fchownat, AT_FDCWD, a, 4242, 4242, 0));
    if (IS("fchown"))
        return report(op, syscall(SYS_fchown, ordonly(a), 4242, 4242));
    if (IS("truncate"))
        return report(op, syscall(SYS_truncate, a, 0));
    if (IS("utime")) {
        struct utimbuf t = {1000000, 1000000};
        return report(op, syscall(SYS_utime, a, &t));
    }
    if (IS("utimes")) {
        struct timeval t[2] = {{1000000, 0}, {1000000, 0}};
        return report(op, syscall(SYS_utimes, a, t));
    }
    if (IS("futimesat")) {
        struct timeval t[2] = {{1000000, 0}, {1000000, 0}};
        return report(op, syscall(SYS_futimesat, AT_FDCWD, a, t));
    }
    if (IS("utimensat"))
        return report(op, syscall(SYS_utimensat, AT_FDCWD, a, past, 0));
    if (IS("futimens"))  /* utimensat(fd, NULL) on a read-only descriptor */
        return report(op, syscall(SYS_utimensat, ordonly(a), NULL, past, 0));
    if (IS("setxattr"))
        return report(op, syscall(SYS_setxattr, a, "trusted.attack", "x", 1, 0));
    if (IS("lsetxattr"))
        return report(op, syscall(SYS_lsetxattr, a, "trusted.attack", "x", 1, 0));
    if (IS("fsetxattr"))
        return report(op, syscall(SYS_fsetxattr, ordonly(a), "trusted.attack", "x", 1, 0));
    if (IS("removexattr"))
        return report(op, syscall(SYS_removexattr, a, "trusted.victim"));
    if (IS("lremovexattr"))
        return report(op, syscall(SYS_lremovexattr, a, "trusted.victim"));
    if (IS("fremovexattr"))
        return report(op, syscall(SYS_fremovexattr, ordonly(a), "trusted.victim"));
    if (IS("open_by_handle")) {
        /* FILE: a name for the handle is only a read; the reopen by handle passes no path */
        struct {
            struct file_handle fh;
            unsigned char data[MAX_HANDLE_SZ];
        } h = {.fh.handle_bytes = MAX_HANDLE_SZ};
        int mount_id;
        if (syscall(SYS_name_to_handle_at, AT_FDCWD, a, &h.fh, &mount_id, 0) < 0)
            die_setup("name_to_handle_at");
        int mfd = open(b, O_RDONLY | O_DIRECTORY);  /* B: any directory on that mount */
        if (mfd < 0)
            die_setup(b);
        return write_through(op, syscall(SYS_open_by_handle_at, mfd, &h.fh,
                                         O_WRONLY | O_APPEND));
    }
    if (IS("acct")) {  /* the kernel itself appends a record to FILE when a process exits */
        long rc = syscall(SYS_acct, a);
        if (rc == 0) {
            pid_t p = fork();
            if (p == 0)
                _exit(0);
            waitpid(p, NULL, 0);
            syscall(SYS_acct, NULL);
        }
        return report(op, rc);
    }
    if (IS("mount_bind")) {  /* SRC DST NAME: bind SRC over DST, then create DST/NAME */
        if (unshare(CLONE_NEWNS) < 0)
            return report("unshare(CLONE_NEWNS)", -1);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            return report("mount(MS_PRIVATE)", -1);
        if (mount(a, b, NULL, MS_BIND, NULL) < 0)
            return report("mount(MS_BIND)", -1);
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", b, c);
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("tmpfile_link")) {  /* DIR DEST: an O_TMPFILE in DIR, then linked in as DEST */
        int fd = (int)syscall(SYS_open, a, O_TMPFILE | O_WRONLY, 0644);
        if (fd < 0)
            return report("open(O_TMPFILE)", -1);
        if (write(fd, payload, sizeof payload - 1) < 0)
            die_setup("write");
        return report(op, syscall(SYS_linkat, fd, "", AT_FDCWD, b, AT_EMPTY_PATH));
    }
    if (IS("chroot_creat")) {  /* ROOT PATH: PATH is read inside the new root */
        if (chroot(a) < 0 || chdir("/") < 0)
            return report("chroot", -1);
        return write_through(op, syscall(SYS_open, b, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("chroot_chmod")) {  /* ROOT PATH: PATH, which names an allowed file outside, is
                                  read inside the new root, where it is a forbidden one */
        if (chroot(a) < 0 || chdir("/") < 0)
            return report("chroot", -1);
        return report(op, syscall(SYS_chmod, b, 0600));
    }
    if (IS("cwd_creat")) {  /* DIR NAME: a relative name resolved against the cwd */
        if (chdir(a) < 0)
            die_setup("chdir");
        return write_through(op, syscall(SYS_open, b, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("proc_cwd_creat")) {
        if (chdir(a) < 0)
            die_setup("chdir");
        char p[4096];
        snprintf(p, sizeof p, "/proc/self/cwd/%s", b);
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("proc_root_creat")) {  /* PATH seen through /proc/self/root */
        char p[4096];
        snprintf(p, sizeof p, "/proc/self/root%s", a);
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("proc_fd_dir_creat")) {  /* DIR NAME: /proc/self/fd/N/NAME with N a dirfd */
        char p[4096];
        snprintf(p, sizeof p, "/proc/self/fd/%d/%s", opath(a), b);
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("proc_thread_cwd_creat")) {  /* DIR NAME: /proc/thread-self/cwd/NAME */
        if (chdir(a) < 0)
            die_setup("chdir");
        char p[4096];
        snprintf(p, sizeof p, "/proc/thread-self/cwd/%s", b);
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_CREAT, 0644));
    }
    if (IS("tmpfile_proc_link")) {  /* DIR DEST: an O_TMPFILE in DIR, linked in as DEST
                                       through /proc/self/fd/N (linkat(2)'s unprivileged way) */
        int fd = (int)syscall(SYS_open, a, O_TMPFILE | O_WRONLY, 0644);
        if (fd < 0)
            return report("open(O_TMPFILE)", -1);
        if (write(fd, payload, sizeof payload - 1) < 0)
            die_setup("write");
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        return report(op, syscall(SYS_linkat, AT_FDCWD, p, AT_FDCWD, b, AT_SYMLINK_FOLLOW));
    }
    if (IS("proc_fd_reopen")) {  /* FILE: opened for reading, reopened for writing by fd */
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", ordonly(a));
        return write_through(op, syscall(SYS_open, p, O_WRONLY | O_APPEND));
    }
    if (IS("hardlink_write")) {  /* FILE LINK: link FILE into an allowed dir, write the link */
        if (syscall(SYS_link, a, b) < 0)
            return report("link", -1);
        return write_through(op, syscall(SYS_open, b, O_WRONLY | O_APPEND));
    }
    if (IS("setflags")) {  /* chattr +d through a read-only descriptor */
        int flags = FS_NODUMP_FL;
        return report(op, ioctl(ordonly(a), FS_IOC_SETFLAGS, &flags));
    }
    if (IS("core_dump")) {  /* DIR: no call names the core file: the kernel writes it */
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        if (chdir(a) < 0)
            die_setup("chdir");
        if (getrlimit(RLIMIT_CORE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_CORE, &rl);
        }
        pid_t p = fork();
        if (p == 0) {
            signal(SIGSEGV, SIG_DFL);
            raise(SIGSEGV);
            _exit(0);
        }
        int status;
        waitpid(p, &status, 0);
        errno = EPERM;
        return report(op, WIFSIGNALED(status) && WCOREDUMP(status) ? 0 : -1);
    }
#undef IS
    fprintf(stderr, "fsops: unknown op %s\n", op);
    return SETUP;
}

int main(int argc, char **argv)
{
    need_args(argc, argv, 3, "fsops OP PATH [PATH2 [NAME]]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    return by_op(argv[1], argc, argv);
}
