"""Background jobs: the registry, single-runner locks, run records, and the purge/jobs commands."""
