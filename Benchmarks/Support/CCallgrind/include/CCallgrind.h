// Callgrind client requests, callable from Swift. Outside valgrind each is a
// few no-op instructions.
#ifndef UTURN_CCALLGRIND_H
#define UTURN_CCALLGRIND_H

/// Non-zero when running under valgrind.
int uturn_running_on_valgrind(void);
/// Zero the counters and switch collection on (run with --collect-atstart=no).
void uturn_callgrind_start(void);
/// Switch collection off and dump the counters collected since start, tagged `name`.
void uturn_callgrind_stop(const char *name);

#endif
