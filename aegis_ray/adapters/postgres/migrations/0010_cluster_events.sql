-- One feed for the whole cluster (`aegis events --all`): node joins, losses and drains, and a
-- copy of every execution state change, in one id order so a follower needs one cursor.
-- Numbered 0010 to leave 0003-0009 free for migrations written in parallel.

CREATE TABLE cluster_events (
    id           bigserial PRIMARY KEY,
    ts           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL CHECK (kind IN ('node', 'execution')),
    -- NULL for node events: only admins see those.
    tenant_id    text,
    node_id      text,
    execution_id uuid REFERENCES executions (id) ON DELETE CASCADE,
    name         text,
    from_state   text,
    to_state     text,
    message      text NOT NULL DEFAULT ''
);
CREATE INDEX cluster_events_tenant ON cluster_events (tenant_id, id);

-- The status a node was last seen in, so that a change is recorded once however many
-- orchestrators observe it (compare-and-set on this column).
ALTER TABLE nodes ADD COLUMN observed_status text;

CREATE FUNCTION aegis_cluster_event_of_execution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cluster_events (ts, kind, tenant_id, node_id, execution_id, name, from_state,
                                to_state, message)
    SELECT n.ts, 'execution', e.tenant_id, n.node_id, n.execution_id, e.name, n.from_state,
           n.to_state, n.message
    FROM new_rows n JOIN executions e ON e.id = n.execution_id
    WHERE n.kind = 'state'
    ORDER BY n.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER execution_events_to_cluster AFTER INSERT ON execution_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_cluster_event_of_execution();

-- Followers of the cluster feed wait for this notification (one per statement).
CREATE FUNCTION aegis_notify_cluster() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aegis_cluster', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER cluster_events_notify AFTER INSERT ON cluster_events
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_notify_cluster();
