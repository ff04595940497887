// Debian's hiredis (libhiredis-dev), imported as is: the Redis user store.
// Only redisConnectWithTimeout, redisCommandArgv (not the variadic
// redisCommand, which Swift cannot call) and freeReplyObject are used.
#include <hiredis/hiredis.h>
