-- Issue 12: tokens that cannot take the cluster.
-- join: single use, bound to the node id (and node type) it was issued for, redeemed once
--       (redeemed_at); a join token without node_id is the `ray up` pre-shared join secret,
--       limited to node ids of its node_types (`<type>` or `<type>-...`), each node id once
--       (join_redemptions).
-- node: a node's own credential, handed out at registration; heartbeats and re-registration
--       of that node need it.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'user', 'join', 'node'));
ALTER TABLE api_tokens
    ADD COLUMN node_id text,
    ADD COLUMN node_type text,
    ADD COLUMN node_types text[],
    ADD COLUMN redeemed_at timestamptz;
-- Join tokens issued before this migration were bound to nothing: they stop working.
UPDATE api_tokens SET revoked_at = now()
    WHERE role = 'join' AND node_id IS NULL AND revoked_at IS NULL;
CREATE INDEX api_tokens_node ON api_tokens (node_id) WHERE role = 'node' AND revoked_at IS NULL;

CREATE TABLE join_redemptions (
    token_id    uuid NOT NULL REFERENCES api_tokens (id),
    node_id     text NOT NULL,
    redeemed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, node_id)
);

-- Every orchestrator caches verified tokens briefly: a revocation (or any other change of a
-- token row) notifies `aegis_tokens`, and each process drops its cache at once.
CREATE FUNCTION aegis_notify_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aegis_tokens', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_notify AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_notify_tokens();
