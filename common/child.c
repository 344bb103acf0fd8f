/* child.c: fork/exec of handlers, process groups, and the keeper. */
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

#define KEEPER_MAX 4096

static int keeper_fd = -1;     /* the worker's end of the keeper's pipe */

static int
is_executable_file(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
		return -1;
	}
	return access(path, X_OK);
}

int
child_find_command(const char *cmd)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	int saved = ENOENT;

	if (!*cmd) {
		errno = ENOENT;
		return -1;
	}
	if (strchr(cmd, '/'))
		return is_executable_file(cmd);
	if (!path)
		path = "/usr/local/bin:/bin:/usr/bin";
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		int n = snprintf(buf, sizeof buf, "%.*s%s%s", (int)(end - p), p,
		    end == p ? "" : "/", cmd);
		if (n > 0 && (size_t)n < sizeof buf) {
			if (is_executable_file(buf) == 0)
				return 0;
			if (errno != ENOENT)
				saved = errno;
		}
		p = end;
		if (!*p)
			break;
	}
	errno = saved;
	return -1;
}

struct guarded {
	pid_t pid;
	uint64_t deadline_ms;      /* CLOCK_MONOTONIC; 0: none */
};

/* Apply one line of the worker: "+PID DEADLINE" (guard, or move the
 * deadline of, the group PID) or "-PID" (forget it). */
static void
keeper_line(char *line, struct guarded *g, size_t *n)
{
	char *end;
	pid_t pid = (pid_t)strtol(line + 1, &end, 10);
	uint64_t deadline = strtoull(end, NULL, 10);
	size_t i;

	if (pid <= 0)
		return;
	for (i = 0; i < *n && g[i].pid != pid; i++)
		;
	if (line[0] == '-') {
		if (i < *n)
			g[i] = g[--*n];
	} else if (line[0] == '+') {
		if (i == *n && *n < KEEPER_MAX)
			g[(*n)++].pid = pid;
		if (i < *n)
			g[i].deadline_ms = deadline;
	}
}

/* Kill the groups whose lease deadline passed; the ms until the next one. */
static int
keeper_enforce(struct guarded *g, size_t *n)
{
	uint64_t now = child_now_ms(), next = UINT64_MAX;

	for (size_t i = 0; i < *n;) {
		if (g[i].deadline_ms && g[i].deadline_ms <= now) {
			/* its worker did not renew the lease (it is stopped or
			 * hung): the job must not run on past it */
			kill(-g[i].pid, SIGKILL);
			g[i] = g[--*n];
			continue;
		}
		if (g[i].deadline_ms && g[i].deadline_ms < next)
			next = g[i].deadline_ms;
		i++;
	}
	return next == UINT64_MAX ? -1 : (int)(next - now > 60000 ? 60000 : next - now);
}

/* The keeper: guards process groups until the worker's end of fd closes. */
static void
keeper_main(int fd)
{
	static struct guarded g[KEEPER_MAX];
	char buf[4096], line[64];
	size_t n = 0, len = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int timeout = keeper_enforce(g, &n);
		if (poll(&p, 1, timeout) <= 0)
			continue;
		ssize_t got = read(fd, buf, sizeof buf);
		if (got == 0 || (got < 0 && errno != EINTR))
			break;
		for (ssize_t i = 0; i < got; i++) {
			if (buf[i] != '\n') {
				if (len < sizeof line - 1)
					line[len++] = buf[i];
				continue;
			}
			line[len] = '\0';
			len = 0;
			keeper_line(line, g, &n);
		}
	}
	/* the worker is gone: so are its handlers */
	for (size_t j = 0; j < n; j++)
		kill(-g[j].pid, SIGKILL);
	_exit(0);
}

int
child_keeper_start(void)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		sigset_t all;
		close(p[1]);
		/* its own group, so a ^C meant for the worker reaches the worker */
		setpgid(0, 0);
		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
		keeper_main(p[0]);
	}
	close(p[0]);
	keeper_fd = p[1];
	return 0;
}

uint64_t
child_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
tell_keeper(char sign, pid_t pid, uint64_t deadline_ms)
{
	char msg[64];
	int n = snprintf(msg, sizeof msg, "%c%d %llu\n", sign, (int)pid,
	    (unsigned long long)deadline_ms);

	if (keeper_fd >= 0 && write(keeper_fd, msg, (size_t)n) != n)
		warnmsg("cannot tell the keeper process about handler %d:", (int)pid);
}

void
child_forget(pid_t pid)
{
	tell_keeper('-', pid, 0);
}

void
child_guard(pid_t pid, uint64_t deadline_ms)
{
	tell_keeper('+', pid, deadline_ms);
}

void
child_signal_group(pid_t pid, int sig)
{
	if (pid > 0 && kill(-pid, sig) < 0 && errno != ESRCH)
		warnmsg("cannot signal the handler's process group %d:", (int)pid);
}

/* In the child, between fork and exec: only what must happen there. */
static void
exec_child(char *const argv[], char *const env[], int in, int out, int err,
    int report, pid_t parent)
{
	sigset_t none;
	int e;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) /* the worker died before prctl */
		_exit(127);
	setpgid(0, 0);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
	    dup2(report, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
		goto fail;
	close_range(4, ~0U, 0); /* Redis sockets and other handlers' pipes */
	for (char *const *v = env; v && *v; v++)
		putenv(*v);
	execvp(argv[0], argv);
fail:
	e = errno;
	if (write(3, &e, sizeof e) < 0)
		_exit(126);
	_exit(errno == ENOENT ? 127 : 126);
}

static int
pipe_pair(int p[2], int worker_end_is_read)
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	return fcntl(p[worker_end_is_read ? 0 : 1], F_SETFL, O_NONBLOCK);
}

static void
close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int
child_spawn(char *const argv[], char *const env[], struct child *c)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
	int e = 0;
	ssize_t got;
	pid_t parent = getpid(), pid;

	if (pipe_pair(in, 0) < 0 || pipe_pair(out, 1) < 0 || pipe_pair(err, 1) < 0 ||
	    pipe2(rep, O_CLOEXEC) < 0) {
		e = errno;
		int all[] = {in[0], in[1], out[0], out[1], err[0], err[1], rep[0], rep[1]};
		close_all(all, 8);
		errno = e;
		return -1;
	}
	pid = fork();
	if (pid == 0)
		exec_child(argv, env, in[0], out[1], err[1], rep[1], parent);
	e = errno;
	int theirs[] = {in[0], out[1], err[1], rep[1]};
	close_all(theirs, 4);
	if (pid < 0) {
		int ours[] = {in[1], out[0], err[0], rep[0]};
		close_all(ours, 4);
		errno = e;
		return -1;
	}
	setpgid(pid, pid); /* also here: no race with a signal to the group */
	tell_keeper('+', pid, 0);
	while ((got = read(rep[0], &e, sizeof e)) < 0 && errno == EINTR)
		;
	close(rep[0]);
	if (got == (ssize_t)sizeof e) { /* exec failed: reap it, report why */
		waitpid(pid, NULL, 0);
		child_forget(pid);
		int ours[] = {in[1], out[0], err[0]};
		close_all(ours, 3);
		errno = e;
		return -1;
	}
	c->pid = pid;
	c->in = in[1];
	c->out = out[0];
	c->err = err[0];
	return 0;
}
