/* One system call in a loop, timed from inside: the per-call cost a sandbox adds.
 *
 *   sysloop getppid N            a call no policy looks at
 *   sysloop open-read N PATH     open(O_RDONLY)+close: decided in BPF under read-only
 *   sysloop open-write N PATH    open(O_WRONLY)+close: judged by the tracer under allow-write
 *   sysloop connect N IP PORT    connect() of a UDP socket: judged by the tracer under a netmask
 *
 * Prints "<mode> <calls> <ns per call>" and exits 0; any failed call exits 1 with its errno, so a
 * sandbox that denies what the benchmark expects allowed cannot pass for fast.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fail(const char *what)
{
	fprintf(stderr, "sysloop: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: sysloop MODE N [ARGS]\n");
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	long long t0, t1;

	if (!strcmp(mode, "getppid")) {
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		t1 = now_ns();
	} else if (!strcmp(mode, "open-read") || !strcmp(mode, "open-write")) {
		if (argc < 4)
			return 2;
		int flags = mode[5] == 'r' ? O_RDONLY : (O_WRONLY | O_CREAT);
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], flags | O_CLOEXEC, 0600);
			if (fd < 0)
				fail(argv[3]);
			close(fd);
		}
		t1 = now_ns();
	} else if (!strcmp(mode, "connect")) {
		if (argc < 5)
			return 2;
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
		if (inet_pton(AF_INET, argv[3], &sin.sin_addr) != 1)
			return 2;
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			fail("socket");
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			if (connect(s, (struct sockaddr *)&sin, sizeof sin) < 0)
				fail("connect");
		t1 = now_ns();
	} else {
		fprintf(stderr, "sysloop: unknown mode %s\n", mode);
		return 2;
	}
	printf("%s %ld %.1f\n", mode, n, (double)(t1 - t0) / (double)n);
	return 0;
}
