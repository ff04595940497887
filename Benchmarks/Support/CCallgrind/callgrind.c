#include "CCallgrind.h"
#include <valgrind/callgrind.h>

int uturn_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }

void uturn_callgrind_start(void) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_TOGGLE_COLLECT;
}

void uturn_callgrind_stop(const char *name) {
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT(name);
}
