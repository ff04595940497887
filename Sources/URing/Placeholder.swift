// The URing module: see ../shared/ARCHITECTURE.md. Filled in by its issue.
