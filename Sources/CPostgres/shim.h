// Debian's libpq (libpq-dev), imported as is: the PostgreSQL user store.
#include <postgresql/libpq-fe.h>
