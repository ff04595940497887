// Intentionally small: see include/CURing.h. SwiftPM needs one source file
// per C target; the layout checks below guard what Swift relies on.
#include "CURing.h"

_Static_assert(sizeof(struct io_uring_cqe) == 16, "plain 16-byte CQEs expected (no CQE32)");
_Static_assert(sizeof(struct io_uring_buf) == 16, "provided-buffer ring entry layout");
