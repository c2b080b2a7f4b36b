-- Idempotent submission: a client that sends the same Idempotency-Key again (a retry after a
-- network error) gets the execution the key first made, not a second one. A key belongs to its
-- tenant and lasts 24 hours; the manifest's digest tells a retry from a different request.

CREATE TABLE idempotency_keys (
    tenant_id       text NOT NULL,
    key             text NOT NULL,
    manifest_sha256 text NOT NULL,
    execution_id    uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_execution ON idempotency_keys (execution_id);
