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
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
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

/* Find cmd as execvp does: its path into out (size len); 0, or -1 with
 * errno. */
static int
find_command(const char *cmd, char *out, size_t len)
{
	const char *path = getenv("PATH");
	int saved = ENOENT;

	if (!*cmd) {
		errno = ENOENT;
		return -1;
	}
	if (strchr(cmd, '/')) {
		snprintf(out, len, "%s", cmd);
		return is_executable_file(cmd);
	}
	if (!path)
		path = "/usr/local/bin:/bin:/usr/bin";
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		int n = snprintf(out, len, "%.*s%s%s", (int)(end - p), p,
		    end == p ? "" : "/", cmd);
		if (n > 0 && (size_t)n < len) {
			if (is_executable_file(out) == 0)
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

int
child_find_command(const char *cmd)
{
	char buf[PATH_MAX];

	return find_command(cmd, buf, sizeof buf);
}

int
child_check_interpreter(const char *cmd, char *interp, size_t len)
{
	char path[PATH_MAX], line[256];
	ssize_t n;
	size_t skip, name;
	int fd;

	interp[0] = '\0';
	if (find_command(cmd, path, sizeof path) < 0)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0; /* execute-only: exec will tell */
	n = read(fd, line, sizeof line - 1);
	close(fd);
	if (n < 2 || line[0] != '#' || line[1] != '!')
		return 0;
	line[n] = '\0';
	/* as the kernel reads it: up to a space, a tab or the line end, so
	 * a carriage return (CRLF line ends) is part of the name */
	skip = 2 + strspn(line + 2, " \t");
	name = strcspn(line + skip, " \t\n");
	if (name == 0 || skip + name == (size_t)n)
		return 0; /* none, or longer than we read */
	snprintf(interp, len, "%.*s", (int)name, line + skip);
	return is_executable_file(interp) < 0 ? -1 : 0;
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
	uint64_t now = clock_mono_ms(), next = UINT64_MAX;

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

/* Forgets not yet written: they ride along the next word to the keeper
 * (each write wakes it: a context switch per job saved). */
static char forgets[64 * 24];
static size_t forgets_len;

static void
write_keeper(const char *msg, size_t n)
{
	if (keeper_fd >= 0 && write(keeper_fd, msg, n) != (ssize_t)n)
		warnmsg("cannot write to the keeper process:");
}

void
child_keeper_flush(void)
{
	if (forgets_len > 0)
		write_keeper(forgets, forgets_len);
	forgets_len = 0;
}

static void
tell_keeper(char sign, pid_t pid, uint64_t deadline_ms)
{
	char msg[sizeof forgets + 64];
	size_t n = forgets_len;

	memcpy(msg, forgets, forgets_len);
	n += (size_t)snprintf(msg + n, sizeof msg - n, "%c%d %llu\n", sign, (int)pid,
	    (unsigned long long)deadline_ms);
	forgets_len = 0;
	write_keeper(msg, n);
}

void
child_forget(pid_t pid)
{
	int n;

	if (forgets_len + 24 > sizeof forgets)
		child_keeper_flush();
	n = snprintf(forgets + forgets_len, sizeof forgets - forgets_len, "-%d 0\n",
	    (int)pid);
	forgets_len += (size_t)n;
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

/* What the child needs between clone and exec; it shares our memory
 * (CLONE_VM) and we wait (CLONE_VFORK), so error comes back through it. */
struct spawn_args {
	char *const *argv;
	char *const *envp;
	int in, out, err;
	pid_t parent;
	int error;
};

#define SPAWN_STACK (256 * 1024)

/*
 * The child, on a stack of its own, sharing the worker's memory until it
 * execs: only system calls here, no allocation. Signals are blocked on
 * entry (the parent blocked them), so no handler of the worker's runs here.
 */
__attribute__((no_sanitize_address)) static int
spawn_child(void *p)
{
	struct spawn_args *a = p;
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != a->parent) { /* the worker died before prctl */
		a->error = ESRCH;
		_exit(127);
	}
	setpgid(0, 0);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(a->in, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->err, 2) < 0) {
		a->error = errno;
		_exit(126);
	}
	close_range(3, ~0U, 0); /* Redis sockets and other handlers' pipes */
	execvpe(a->argv[0], a->argv, a->envp);
	a->error = errno;
	_exit(errno == ENOENT ? 127 : 126);
}

/* The environment of a handler: ours, less any AQ_* name that env sets,
 * plus env. A new array (the strings are not copied). */
static char **
handler_environment(char *const env[])
{
	extern char **environ;
	size_t n = 0, extra = 0, k = 0;
	char **out;

	for (char **e = environ; e && *e; e++)
		n++;
	for (char *const *v = env; v && *v; v++)
		extra++;
	out = xcalloc(n + extra + 1, sizeof *out);
	for (char **e = environ; e && *e; e++) {
		int replaced = 0;
		for (char *const *v = env; v && *v && !replaced; v++) {
			size_t name = strcspn(*v, "=");
			replaced = strncmp(*e, *v, name + 1) == 0;
		}
		if (!replaced)
			out[k++] = *e;
	}
	for (char *const *v = env; v && *v; v++)
		out[k++] = *v;
	out[k] = NULL;
	return out;
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

/* The stack the child runs on until it execs: mapped once, not from the
 * heap, so no sanitizer takes it for heap memory. */
static char *
spawn_stack(void)
{
	static char *stack;

	if (!stack) {
		void *m = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		stack = m;
	}
	return stack;
}

int
child_spawn(char *const argv[], char *const env[], uint64_t guard_ms,
    struct child *c)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	struct spawn_args a = {.argv = argv, .parent = getpid()};
	char *stack = spawn_stack();
	sigset_t all, old;
	pid_t pid;
	int e;

	if (!stack || pipe_pair(in, 0) < 0 || pipe_pair(out, 1) < 0 ||
	    pipe_pair(err, 1) < 0) {
		e = errno;
		int fds[] = {in[0], in[1], out[0], out[1], err[0], err[1]};
		close_all(fds, 6);
		errno = e;
		return -1;
	}
	a.envp = handler_environment(env);
	a.in = in[0];
	a.out = out[1];
	a.err = err[1];
	/* like posix_spawn: the child shares our memory until it execs, so
	 * forking costs nothing however large the worker is */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = clone(spawn_child, stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	free((void *)a.envp);
	int theirs[] = {in[0], out[1], err[1]};
	close_all(theirs, 3);
	if (pid < 0 || a.error) {
		if (pid > 0) { /* exec failed: reap it, report why */
			waitpid(pid, NULL, 0);
			e = a.error;
		}
		int ours[] = {in[1], out[0], err[0]};
		close_all(ours, 3);
		errno = e;
		return -1;
	}
	tell_keeper('+', pid, guard_ms);
	c->pid = pid;
	c->in = in[1];
	c->out = out[0];
	c->err = err[0];
	return 0;
}
