"""Background job runs: what ran, when, with what outcome and counts."""
