"""Ray: the live node table, the head/worker processes, placement groups and actors."""
