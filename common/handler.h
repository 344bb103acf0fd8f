/* handler.h: what aq-worker and aq-run check of a handler command before
 * any job runs, and the worker id its jobs see (AQ_WORKER_ID). */
#ifndef AQ_HANDLER_H
#define AQ_HANDLER_H

/* handler_check_or_die: exit EX_USAGE, saying what to do, when cmd (the
 * handler, looked up in PATH) cannot be run, or names in its #! line an
 * interpreter that cannot be: the kernel would fail every job. */
void handler_check_or_die(const char *cmd);

/* handler_worker_id: given (--worker-id), else AQ_WORKER_ID, else
 * host:pid; a given one must follow the job id rules, or exit EX_USAGE. */
const char *handler_worker_id(const char *given);

#endif
