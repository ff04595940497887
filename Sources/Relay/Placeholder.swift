// The Relay module: see ../shared/ARCHITECTURE.md. Filled in by its issue.
