/* child.h: running a handler: fork and exec with pipes for its stdin,
 * stdout and stderr, in a process group of its own, dying with its worker
 * (PR_SET_PDEATHSIG), and a keeper process that kills the groups of a
 * worker that was killed (SIGKILL), so no handler outlives its worker, and
 * that kills a handler whose lease its stopped worker could not renew. */
#ifndef AQ_CHILD_H
#define AQ_CHILD_H

#include <stdint.h>
#include <sys/types.h>

/* A started handler: its pid (also its process group) and the worker's
 * ends of its pipes (close-on-exec, non-blocking). */
struct child {
	pid_t pid;
	int in, out, err;
};

/* child_find_command: 0 when cmd (a path, or a name looked up in PATH like
 * execvp does) is an executable file; otherwise -1 with errno set. */
int child_find_command(const char *cmd);

/* child_check_interpreter: for a cmd that child_find_command found and
 * that starts with "#!": 0 when the interpreter that line names is an
 * executable file (or cmd is no script), else -1 with errno set and the
 * interpreter's name in interp (size len). */
int child_check_interpreter(const char *cmd, char *interp, size_t len);

/* child_keeper_start: fork the keeper before anything else runs; it kills
 * every process group it was told of when the worker's end of its pipe
 * closes, whatever ended the worker. Returns 0, or -1 with errno. */
int child_keeper_start(void);

/* child_spawn: start argv[0] (looked up in PATH) with env added to the
 * environment ("NAME=value" strings, NULL-terminated; they replace ours of
 * the same names), guarded by the keeper until guard_ms (see child_guard;
 * 0: no deadline). Returns 0 with *c filled, or -1 with errno: the exec's
 * own error when the command could not be run. */
int child_spawn(char *const argv[], char *const env[], uint64_t guard_ms,
    struct child *c);

/* child_signal_group: send sig to the process group of c (all it started);
 * ESRCH (nothing left) is not an error. */
void child_signal_group(pid_t pid, int sig);

/* child_forget: tell the keeper that the group of pid is gone: with the
 * next word to it, or child_keeper_flush. */
void child_forget(pid_t pid);

/* child_keeper_flush: write the forgets held back. */
void child_keeper_flush(void);

/* child_guard: tell the keeper to kill the group of pid at deadline_ms
 * (clock_mono_ms clock) unless told a later one first: a worker that is
 * stopped or hung past its lease cannot kill its handler itself. */
void child_guard(pid_t pid, uint64_t deadline_ms);

#endif
