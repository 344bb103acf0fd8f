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

/* die_output: standard output failed: with EPIPE (the reader went away,
 * as with `| head`) end quietly as by SIGPIPE, else exit EX_IOERR with
 * the reason. */
void die_output(void) __attribute__((noreturn));

/* finish_stdout: flush and check stdout, so a full disk or a closed pipe is
 * an error (EX_IOERR) instead of lost output; returns code otherwise. */
int finish_stdout(int code);

#endif
