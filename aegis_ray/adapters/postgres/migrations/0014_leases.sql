-- Leases for the work that must run on one orchestrator at a time (the reconciler's sweeps).
-- Numbered 0014 (issue 14) to stay clear of migrations written in parallel.
-- `fencing` grows by one each time another holder takes the lease; a holder's writes check it
-- (compare-and-set) under a share lock on this row, so a holder that lost the lease, however
-- late it wakes up, writes nothing.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,          -- one process: node id, pid and a random part
    node_id     text NOT NULL,          -- the aegis node the holder runs on (`aegis nodes`)
    fencing     bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
