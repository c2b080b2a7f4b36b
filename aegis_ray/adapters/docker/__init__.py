"""Docker: agent containers on the local engine (create, logs, wait, stop, remove)."""
