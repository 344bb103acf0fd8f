/* log.c: stderr messages prefixed by the tool's name; die() and exit codes. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static const char *progname = "aq";

/* A tool started with stdin, stdout or stderr closed (`>&-`) gets
 * /dev/null there: else the first socket it opens (Redis's) would take the
 * number, and its output lines would go into the Redis protocol. */
static void
open_standard_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0 && nul != fd) /* the lowest free number: fd itself */
			close(nul);
	}
}

void
log_init(const char *name)
{
	const char *slash = strrchr(name, '/');

	progname = slash ? slash + 1 : name;
	open_standard_fds();
}

const char *
log_progname(void)
{
	return progname;
}

static void
vwarnmsg(const char *fmt, va_list ap)
{
	int saved = errno;
	size_t n = strlen(fmt);

	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
	errno = saved;
}

void
warnmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnmsg(fmt, ap);
	va_end(ap);
}

void
die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnmsg(fmt, ap);
	va_end(ap);
	exit(code);
}

void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see '%s -h'\n", progname);
	exit(EX_USAGE);
}

/* The reader of standard output went away: end as a filter does, by
 * SIGPIPE (a shell shows 141), with no message. */
static void
die_quietly_of_sigpipe(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(SIGPIPE);
	_exit(128 + SIGPIPE); /* not reached */
}

void
die_output(void)
{
	if (errno == EPIPE)
		die_quietly_of_sigpipe();
	die(EX_IOERR, "cannot write to standard output:");
}

static int watching_stdout;

void
stdout_watch(void)
{
	watching_stdout = 1;
}

int
wait_readable(int fd, long long timeout_ms)
{
	/* events 0: a pipe's write end reports POLLERR once its read end is
	 * closed, a socket POLLHUP once its peer is gone; a file, a terminal
	 * or a pipe with a reader report nothing */
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
	    {.fd = watching_stdout ? STDOUT_FILENO : -1, .events = 0}};
	long long until = timeout_ms >= 0 ? clock_mono_ms() + timeout_ms : -1;

	for (;;) {
		long long left = until < 0 ? -1 : until - clock_mono_ms();
		int n;
		if (until >= 0 && left < 0)
			left = 0;
		n = poll(p, 2, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (p[1].revents & POLLNVAL)
			p[1].fd = -1; /* stdout is closed: its writes will say so */
		else if (p[1].revents & (POLLERR | POLLHUP))
			die_quietly_of_sigpipe();
		if (p[0].revents)
			return 1;
		if (n == 0 || (until >= 0 && clock_mono_ms() >= until))
			return 0;
	}
}

int
finish_stdout(int code)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno == EPIPE)
			die_output();
		warnmsg("cannot write to standard output:");
		return code == 0 ? EX_IOERR : code;
	}
	return code;
}
