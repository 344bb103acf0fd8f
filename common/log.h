/* log.h: messages on stderr prefixed by the tool's name, and the one way to
 * exit with an error; exit codes are sysexits(3), the table in aq(7). */
#ifndef AQ_LOG_H
#define AQ_LOG_H

#include <sysexits.h>

/* log_init: remember the tool's name for every message; call first in main. */
void log_init(const char *progname);

/* log_progname: the name given to log_init. */
const char *log_progname(void);

/* warnmsg: print "PROG: MSG" on stderr; when fmt ends with ':' the text of
 * errno at the call is appended, as in "PROG: cannot open x: No such file". */
void warnmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* die: warnmsg, then exit with code (an EX_* value). */
void die(int code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

/* die_usage: die(EX_USAGE, ...) for a bad option, value or argument, with a
 * pointer to the tool's usage: "PROG: MSG; see 'PROG -h'". */
void die_usage(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* die_output: standard output failed: with EPIPE (the reader went away,
 * as with `| head`) end quietly as by SIGPIPE, else exit EX_IOERR with
 * the reason. */
void die_output(void) __attribute__((noreturn));

/* stdout_watch: from now on, wait_readable also watches standard output:
 * for a tool whose output is its purpose, a reader that went away (as
 * with `| head -1`) ends it at once, quietly as die_output does, instead
 * of at its next write, which may be long in coming. */
void stdout_watch(void);

/* wait_readable: wait until fd is readable (1) or timeout_ms have passed
 * (0; < 0: no limit); fd < 0 just sleeps. With stdout_watch, a standard
 * output whose reader has gone (POLLERR on a pipe, POLLHUP on a socket)
 * ends the process meanwhile. -1 with errno when poll fails. */
int wait_readable(int fd, long long timeout_ms);

/* finish_stdout: flush and check stdout, so a full disk is an error
 * (EX_IOERR) instead of lost output, and a closed pipe ends the tool as
 * die_output does; returns code otherwise. */
int finish_stdout(int code);

#endif
