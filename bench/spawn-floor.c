/* spawn-floor: the fork/exec floor of this machine, for bench/worker.
 * spawn-floor -n N -c C -- CMD ARGS runs CMD N times, C at a time, with
 * fork+execvp+waitpid and each child's stdin, stdout and stderr on pipes as
 * aq-worker does (a payload line on stdin, then EOF; stdout and stderr read
 * to EOF), and prints one line:
 *   runs=N concurrency=C elapsed_s=S runs_per_s=R us_per_run=U failed=F
 * Exit status: 0, or 1 when a run failed (did not exit 0), 2 on misuse. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMAX 256

static const char payload[] = "{\"n\":1,\"msg\":\"hello\"}\n";

struct slot {
	pid_t pid;     /* 0: free */
	int out, err;  /* -1 once at EOF */
};

static void
usage(void)
{
	fprintf(stderr, "usage: spawn-floor -n N -c C -- command [argument ...]\n");
	exit(2);
}

static long
count(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > max)
		usage();
	return v;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fail(const char *what)
{
	fprintf(stderr, "spawn-floor: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* A pipe whose ends other children do not inherit (they would hold it open
 * and delay its EOF). */
static void
cloexec_pipe(int p[2])
{
	if (pipe(p) < 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) < 0)
		fail("pipe");
}

static void
start(struct slot *s, char **argv)
{
	int in[2], out[2], err[2];
	pid_t pid;

	cloexec_pipe(in);
	cloexec_pipe(out);
	cloexec_pipe(err);
	pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	/* a short line fits the pipe buffer: this write does not block; the
	 * child may exit without reading it (EPIPE, SIGPIPE is ignored) */
	if (write(in[1], payload, sizeof payload - 1) < 0 && errno != EPIPE)
		fail("write");
	close(in[1]);
	s->pid = pid;
	s->out = out[0];
	s->err = err[0];
}

/* Read what is there on fd; close it at EOF. */
static void
drain(int *fd)
{
	char buf[4096];
	ssize_t got = read(*fd, buf, sizeof buf);

	if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
		close(*fd);
		*fd = -1;
	}
}

int
main(int argc, char **argv)
{
	struct slot slots[CMAX];
	struct pollfd pfd[2 * CMAX];
	int map[2 * CMAX];
	long n = 0, c = 0, started = 0, done = 0, failed = 0;
	int opt;
	double t0, t1;

	while ((opt = getopt(argc, argv, "+n:c:")) != -1) {
		switch (opt) {
		case 'n': n = count(optarg, 100000000L); break;
		case 'c': c = count(optarg, CMAX); break;
		default: usage();
		}
	}
	if (!n || !c || optind >= argc)
		usage();
	argv += optind;
	signal(SIGPIPE, SIG_IGN);
	memset(slots, 0, sizeof slots);

	t0 = now();
	while (done < n) {
		int k = 0;

		for (long i = 0; i < c; i++) {
			struct slot *s = &slots[i];
			if (!s->pid && started < n) {
				start(s, argv);
				started++;
			}
			if (!s->pid)
				continue;
			if (s->out < 0 && s->err < 0) {
				int status;
				while (waitpid(s->pid, &status, 0) < 0)
					if (errno != EINTR)
						fail("waitpid");
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					failed++;
				s->pid = 0;
				done++;
				i--; /* the slot is free: start the next run in it */
				continue;
			}
			if (s->out >= 0) {
				pfd[k] = (struct pollfd){.fd = s->out, .events = POLLIN};
				map[k++] = (int)i * 2;
			}
			if (s->err >= 0) {
				pfd[k] = (struct pollfd){.fd = s->err, .events = POLLIN};
				map[k++] = (int)i * 2 + 1;
			}
		}
		if (!k)
			continue;
		if (poll(pfd, (nfds_t)k, -1) < 0) {
			if (errno == EINTR)
				continue;
			fail("poll");
		}
		for (int j = 0; j < k; j++) {
			struct slot *s = &slots[map[j] / 2];
			if (pfd[j].revents)
				drain(map[j] % 2 ? &s->err : &s->out);
		}
	}
	t1 = now();
	if (t1 <= t0)
		t1 = t0 + 1e-9;
	printf("runs=%ld concurrency=%ld elapsed_s=%.6f runs_per_s=%.1f "
	    "us_per_run=%.1f failed=%ld\n", n, c, t1 - t0, (double)n / (t1 - t0),
	    (t1 - t0) * 1e6 / (double)n, failed);
	return failed ? 1 : 0;
}
