// Debian's libsqlite3 (libsqlite3-dev), imported as is: the SQLite user store.
#include <sqlite3.h>
