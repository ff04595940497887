// The TURN module: see ../shared/ARCHITECTURE.md. Filled in by its issue.
