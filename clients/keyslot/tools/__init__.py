"""Developer tools: `make run` launcher and the stale-stub check."""
