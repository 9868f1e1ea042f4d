"""Shared by the tracer tests (no tests here): a small static C program that performs the
operations a test names, and ways to run it filtered and traced.

The program prints one line per operation, "<op> OK" or "<op> ERR <errno>", so a test checks
what the kernel (or the tracer) answered from the host side, and the files left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from secfilt_runtime import kernel, seccomp, tracer
from secfilt_runtime.policy.model import Policy

HAVE_GCC = shutil.which("gcc") is not None

HELPER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char low[4096];   /* static, non-PIE: below 4 GiB, reachable from int 0x80 */

static int out(const char *op, long rc)
{
    if (rc < 0) printf("%s ERR %d\n", op, errno);
    else printf("%s OK\n", op);
    fflush(stdout);
    return 0;
}

static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    if (ret < 0 && ret > -4096) { errno = -ret; return -1; }
    return ret;
}

static int addr_of(const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (void *)ss;
        s6->sin6_family = AF_INET6; s6->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (void *)ss;
    s4->sin_family = AF_INET; s4->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s4->sin_addr);
    return sizeof *s4;
}

static void *thread_open(void *p)
{
    out("thread_open", open(p, O_WRONLY | O_CREAT, 0644));
    return NULL;
}

static int one(int argc, char **argv, int i)
{
    const char *op = argv[i];
    const char *a = i + 1 < argc ? argv[i + 1] : "";
    const char *b = i + 2 < argc ? argv[i + 2] : "";
    if (!strcmp(op, "open_w")) return out(op, open(a, O_WRONLY | O_CREAT, 0644)), 2;
    if (!strcmp(op, "open_r")) return out(op, open(a, O_RDONLY)), 2;
    if (!strcmp(op, "open_trunc")) return out(op, open(a, O_RDONLY | O_TRUNC)), 2;
    if (!strcmp(op, "open_nofollow_w")) return out(op, open(a, O_WRONLY | O_NOFOLLOW)), 2;
    if (!strcmp(op, "creat")) return out(op, creat(a, 0644)), 2;
    if (!strcmp(op, "mkdir")) return out(op, mkdir(a, 0755)), 2;
    if (!strcmp(op, "rmdir")) return out(op, rmdir(a)), 2;
    if (!strcmp(op, "unlink")) return out(op, unlink(a)), 2;
    if (!strcmp(op, "chmod")) return out(op, chmod(a, 0600)), 2;
    if (!strcmp(op, "truncate")) return out(op, truncate(a, 0)), 2;
    if (!strcmp(op, "rename")) return out(op, rename(a, b)), 3;
    if (!strcmp(op, "link")) return out(op, link(a, b)), 3;
    if (!strcmp(op, "symlink")) return out(op, symlink(a, b)), 3;
    if (!strcmp(op, "chdir")) return out(op, chdir(a)), 2;
    if (!strcmp(op, "openat_w")) {   /* dirfd of a, then b relative to it */
        int d = open(a, O_RDONLY | O_DIRECTORY);
        return out(op, openat(d, b, O_WRONLY | O_CREAT, 0644)), 3;
    }
    if (!strcmp(op, "fchmod_r")) {   /* a read-only descriptor, then fchmod */
        int fd = open(a, O_RDONLY);
        return out(op, fchmod(fd, 0600)), 2;
    }
    if (!strcmp(op, "procfd_w")) {   /* /proc/self/fd/N of a read-only descriptor, for write */
        char p[64];
        int fd = open(a, O_RDONLY);
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        return out(op, open(p, O_WRONLY | O_TRUNC)), 2;
    }
    if (!strcmp(op, "int80_open_w")) {
        strncpy(low, a, sizeof low - 1);
        return out(op, int80(5, (long)low, O_WRONLY | O_CREAT, 0644)), 2;
    }
    if (!strcmp(op, "int80_mkdir")) {
        strncpy(low, a, sizeof low - 1);
        return out(op, int80(39, (long)low, 0755, 0)), 2;
    }
    if (!strcmp(op, "socketcall")) {   /* i386 socketcall(SYS_CONNECT or SYS_SENDTO) */
        static struct sockaddr_storage lowss;
        static unsigned int lowargs[6];
        static char lowbuf[1] = {'x'};
        int call = atoi(a), len = addr_of(b, atoi(argv[i + 3]), &lowss);
        int s = socket(lowss.ss_family, SOCK_DGRAM, 0);
        unsigned int sendto_args[6] = {s, (unsigned int)(long)lowbuf, 1, 0,
                                       (unsigned int)(long)&lowss, len};
        memcpy(lowargs, sendto_args, sizeof lowargs);
        if (call == 3) { lowargs[1] = (unsigned int)(long)&lowss; lowargs[2] = len; }
        return out(op, int80(102, call, (long)lowargs, 0)), 4;
    }
    if (!strcmp(op, "openat2_w")) {
        unsigned long long how[3] = {O_WRONLY | O_CREAT, 0644, 0};
        return out(op, syscall(SYS_openat2, AT_FDCWD, a, how, sizeof how)), 2;
    }
    if (!strcmp(op, "proccwd_w")) {
        char p[4200];
        snprintf(p, sizeof p, "/proc/self/cwd/%s", a);
        return out(op, open(p, O_WRONLY | O_CREAT, 0644)), 2;
    }
    if (!strcmp(op, "linkat_follow")) return out(op, linkat(AT_FDCWD, a, AT_FDCWD, b,
                                                            AT_SYMLINK_FOLLOW)), 3;
    if (!strcmp(op, "bind_unix")) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        strncpy(un.sun_path, a, sizeof un.sun_path - 1);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        return out(op, bind(s, (void *)&un, sizeof un)), 2;
    }
    if (!strcmp(op, "setflags")) {   /* chattr through a read-only descriptor */
        int fd = open(a, O_RDONLY), flags = 0;
        ioctl(fd, FS_IOC_GETFLAGS, &flags);
        flags |= FS_NOATIME_FL;
        return out(op, syscall(SYS_ioctl, fd, 0xffffffff00000000UL | FS_IOC_SETFLAGS,
                               &flags)), 2;
    }
    if (!strcmp(op, "setxattr")) return out(op, setxattr(a, "user.t", "v", 1, 0)), 2;
    if (!strcmp(op, "futimens")) {
        int fd = open(a, O_RDONLY);
        return out(op, futimens(fd, NULL)), 2;
    }
    if (!strcmp(op, "own_filter")) {   /* a filter of its own: TRACE everything, forged data */
        struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | 0x1234)};
        struct sock_fprog prog = {1, f};
        return out(op, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)), 1;
    }
    if (!strcmp(op, "own_trace")) {   /* a filter of its own: TRACE everything, data `a` */
        unsigned data = (unsigned)strtoul(a, NULL, 0) & 0xffff;
        struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | data)};
        struct sock_fprog prog = {1, f};
        return out(op, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)), 2;
    }
    /* calls the policy's filter refuses outright (with a log: TRACE stops tagged with data) */
    if (!strcmp(op, "chroot")) return out(op, chroot(a)), 2;
    if (!strcmp(op, "swapon")) return out(op, syscall(SYS_swapon, a, 0)), 2;   /* else ENOENT */
    if (!strcmp(op, "traceme")) return out(op, syscall(SYS_ptrace, 0, 0, 0, 0)), 1;
    if (!strcmp(op, "mount")) return out(op, syscall(SYS_mount, "none", a, "tmpfs", 0, 0)), 2;
    if (!strcmp(op, "bpf")) return out(op, syscall(SYS_bpf, 0, NULL, 0)), 1;  /* else EFAULT */
    if (!strcmp(op, "setns0") || !strcmp(op, "setns_mnt") || !strcmp(op, "setns_cgroup")) {
        /* our own namespace: the kernel would accept it, only the policy refuses */
        int fd = open(op[6] == 'c' ? "/proc/self/ns/cgroup" : "/proc/self/ns/mnt", O_RDONLY);
        int type = !strcmp(op, "setns0") ? 0 : op[6] == 'c' ? CLONE_NEWCGROUP : CLONE_NEWNS;
        return out(op, setns(fd, type)), 1;
    }
    if (!strcmp(op, "tiocsti")) return out(op, ioctl(0, TIOCSTI, "x")), 1;
    if (!strcmp(op, "ip_options") || !strcmp(op, "cmsg_route")) {
        /* a loose source route through b: the packet's first hop is b, not a */
        struct sockaddr_storage ok;
        int len = addr_of(a, 9, &ok);
        unsigned char opt[8] = {0x83, 7, 4, 0, 0, 0, 0, 1};
        inet_pton(AF_INET, b, opt + 3);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (!strcmp(op, "ip_options"))
            return out(op, setsockopt(s, IPPROTO_IP, IP_OPTIONS, opt, sizeof opt)), 3;
        union { struct cmsghdr h; unsigned char buf[CMSG_SPACE(sizeof opt)]; } control;
        memset(&control, 0, sizeof control);
        control.h.cmsg_level = IPPROTO_IP;
        control.h.cmsg_type = IP_RETOPTS;
        control.h.cmsg_len = CMSG_LEN(sizeof opt);
        memcpy(CMSG_DATA(&control.h), opt, sizeof opt);
        char one = 'x';
        struct iovec iov = {&one, 1};
        struct msghdr mh = {.msg_name = &ok, .msg_namelen = len, .msg_iov = &iov,
                            .msg_iovlen = 1, .msg_control = &control,
                            .msg_controllen = sizeof control};
        return out(op, sendmsg(s, &mh, 0)), 3;
    }
    if (!strcmp(op, "setxattrat")) {   /* 6.13: newer than libseccomp's syscall table */
        struct { unsigned long long value; unsigned int size, flags; } args = {
            (unsigned long long)(long)"v", 1, 0};
        return out(op, syscall(463, AT_FDCWD, a, 0, "user.t", &args, sizeof args)), 2;
    }
    if (!strcmp(op, "int80_getpid")) return out(op, int80(20, 0, 0, 0)), 1;
    if (!strcmp(op, "badptr_open_w"))
        return out(op, syscall(SYS_open, (char *)1, O_WRONLY | O_CREAT, 0644)), 1;
    if (!strcmp(op, "badptr_connect")) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        return out(op, connect(s, (void *)8, 16)), 1;
    }
    if (!strcmp(op, "longpath_mkdir")) {
        char *p = malloc(8192);
        memset(p, 'a', 8191); p[8191] = 0;
        return out(op, mkdir(p, 0755)), 1;
    }
    if (!strcmp(op, "thread_open_w")) {
        pthread_t t;
        pthread_create(&t, NULL, thread_open, (void *)a);
        pthread_join(t, NULL);
        return 2;
    }
    if (!strcmp(op, "fork_open_w")) {
        pid_t p = fork();
        if (p == 0) { out("child_open", open(a, O_WRONLY | O_CREAT, 0644)); _exit(0); }
        waitpid(p, NULL, 0);
        return 2;
    }
    if (!strcmp(op, "vfork_mkdir")) {
        pid_t p = vfork();
        if (p == 0) { syscall(SYS_mkdir, a, 0755); _exit(errno); }
        int st; waitpid(p, &st, 0);
        printf("vfork_mkdir %s %d\n", WEXITSTATUS(st) ? "ERR" : "OK", WEXITSTATUS(st));
        fflush(stdout);
        return 2;
    }
    if (!strcmp(op, "vfork_exec_open_w")) {
        /* a vfork child (the parent's memory) opens a for writing from `low`, then execs this
           program, which opens b from `low` again: the same address in another address space */
        strncpy(low, a, sizeof low - 1);
        pid_t p = vfork();
        if (p == 0) {
            char *args[] = {argv[0], "low_open_w", (char *)b, NULL};
            syscall(SYS_open, low, O_WRONLY | O_CREAT, 0644);
            execv(argv[0], args);
            _exit(127);
        }
        waitpid(p, NULL, 0);
        return 3;
    }
    if (!strcmp(op, "low_open_w")) {
        strncpy(low, a, sizeof low - 1);
        return out(op, open(low, O_WRONLY | O_CREAT, 0644)), 2;
    }
    if (!strcmp(op, "untraced_clone")) {
        long r = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) { mkdir(a, 0755); _exit(0); }
        if (r > 0) waitpid(r, NULL, 0);
        return out(op, r), 2;
    }
    if (!strcmp(op, "ptrace")) return out(op, syscall(SYS_ptrace, 0x4206, getppid(), 0, 0)), 1;
    if (!strcmp(op, "clone3")) return out(op, syscall(SYS_clone3, 0, 0)), 1;
    if (!strcmp(op, "io_uring")) return out(op, syscall(SYS_io_uring_setup, 1, malloc(120))), 1;
    if (!strcmp(op, "listener")) {
        return out(op, syscall(SYS_seccomp, 1, 8, (void *)0)), 1;
    }
    if (!strcmp(op, "sleep")) { sleep(atoi(a)); return 2; }
    if (!strcmp(op, "socket")) return out(op, socket(atoi(a), atoi(b), 0)), 3;
    if (!strcmp(op, "connect") || !strcmp(op, "sendto") || !strcmp(op, "sendmsg")
            || !strcmp(op, "sendmmsg") || !strcmp(op, "sendto_null")) {
        struct sockaddr_storage ss;
        int len = addr_of(a, atoi(b), &ss);
        int s = socket(ss.ss_family, SOCK_DGRAM, 0);
        char buf[1] = {'x'};
        long rc;
        if (!strcmp(op, "connect")) rc = connect(s, (void *)&ss, len);
        else if (!strcmp(op, "sendto")) rc = sendto(s, buf, 1, 0, (void *)&ss, len);
        else if (!strcmp(op, "sendto_null")) {
            connect(s, (void *)&ss, len);
            rc = sendto(s, buf, 1, 0, NULL, 0);
        }
        else {
            struct iovec iov = {buf, 1};
            struct mmsghdr mm[2];
            memset(mm, 0, sizeof mm);
            for (int k = 0; k < 2; k++) {
                mm[k].msg_hdr.msg_iov = &iov; mm[k].msg_hdr.msg_iovlen = 1;
            }
            /* the first message is harmless (loopback), the second goes to the target */
            struct sockaddr_storage lo;
            int lolen = addr_of(ss.ss_family == AF_INET6 ? "::1" : "127.0.0.1", 9, &lo);
            mm[0].msg_hdr.msg_name = &lo; mm[0].msg_hdr.msg_namelen = lolen;
            mm[1].msg_hdr.msg_name = &ss; mm[1].msg_hdr.msg_namelen = len;
            if (!strcmp(op, "sendmsg")) rc = sendmsg(s, &mm[1].msg_hdr, 0);
            else rc = sendmmsg(s, mm, 2, 0);
        }
        return out(op, rc), 3;
    }
    fprintf(stderr, "unknown op %s\n", op);
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc;) i += one(argc, argv, i);
    return 0;
}
"""


def build_helper(directory: Path) -> str:
    source = directory / "helper.c"
    source.write_text(HELPER_C)
    binary = directory / "helper"
    # static and not position-independent: its globals sit below 4 GiB, where int 0x80 reaches
    subprocess.run(["gcc", "-O1", "-static", "-no-pie", "-pthread", "-o", str(binary),
                    str(source)], check=True, capture_output=True)
    return str(binary)


@dataclass
class Outcome:
    status: int
    lines: list[str]

    def answer(self, op: str, nth: int = 0) -> str:
        """"OK" or "ERR <errno>" of the nth `op` line."""
        found = [line.split(" ", 1)[1] for line in self.lines if line.split(" ", 1)[0] == op]
        return found[nth]

    @property
    def exit_code(self) -> int | None:
        return os.waitstatus_to_exitcode(self.status)


def _child(filters: seccomp.Filters, argv: list[str], gate: int, out: int, netns: bool,
           setup: Callable[[], None] | None) -> None:  # pragma: no cover - forked child
    try:
        os.dup2(out, 1)
        if setup is not None:
            setup()
        if netns:
            kernel.unshare(kernel.CLONE_NEWNET)
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        os.read(gate, 1)  # until seized
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install(filters)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)


def start(policy: Policy, argv: list[str], *, netns: bool = False,
          setup: Callable[[], None] | None = None) -> tuple[int, Callable[[], None], int]:
    """Fork a child that waits, then loads the policy's filter and execs argv:
    (pid, release, read end of its stdout)."""
    filters = seccomp.prepare(None, policy, cache_dir=None)
    gate_r, gate_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(gate_w)
        os.close(out_r)
        _child(filters, argv, gate_r, out_w, netns, setup)
    os.close(gate_r)
    os.close(out_w)

    def release() -> None:
        os.write(gate_w, b"x")
        os.close(gate_w)

    return pid, release, out_r


def read_lines(fd: int) -> list[str]:
    with os.fdopen(fd, "rb") as f:
        return f.read().decode().splitlines()


def run_traced(policy: Policy, argv: list[str], *, log_path: str | None = None,
               netns: bool = False, setup: Callable[[], None] | None = None) -> Outcome:
    """The caller of trace_child is the child's parent: the foreground `run` shape."""
    pid, release, out = start(policy, argv, netns=netns, setup=setup)
    status = tracer.trace_child(pid, policy, container_id="test", log_path=log_path,
                                release=release)
    return Outcome(status, read_lines(out))


def run_filtered_only(policy: Policy, argv: list[str]) -> Outcome:
    """The filter without any tracer: a TRACE rule would fail its call with ENOSYS."""
    pid, release, out = start(policy, argv)
    release()
    lines = read_lines(out)
    _, status = os.waitpid(pid, 0)
    return Outcome(status, lines)


def enter_root(root: str) -> None:  # pragma: no cover - runs in the forked child
    """A container's view in miniature: a mount namespace of its own whose root is `root`
    (pivot_root), with its own /proc. The tracer stays in the host's namespace."""
    kernel.unshare(kernel.CLONE_NEWNS)
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    kernel.mount(root, root, None, kernel.MS_BIND | kernel.MS_REC)
    os.chdir(root)
    kernel.pivot_root(".", ".")
    kernel.umount2(".", kernel.MNT_DETACH)
    os.chdir("/")
    kernel.mount("proc", "/proc", "proc", 0)


def log_records(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]
