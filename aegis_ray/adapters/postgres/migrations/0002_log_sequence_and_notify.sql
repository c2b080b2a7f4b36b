-- Log lines carry the sequence number the node agent gave them (their index among the
-- container's lines): a batch stored twice (a retried activity) is stored once.
ALTER TABLE execution_logs ADD COLUMN seq bigint;
CREATE UNIQUE INDEX execution_logs_attempt_seq ON execution_logs (execution_id, attempt, seq);

-- Watchers wait for a notification instead of polling: every statement that adds events or
-- log lines notifies the channel `aegis_execution` with each execution id it touched
-- (PostgreSQL folds equal notifications of one transaction into one).
CREATE FUNCTION aegis_notify_execution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aegis_execution', ids.execution_id::text)
    FROM (SELECT DISTINCT execution_id FROM new_rows) AS ids;
    RETURN NULL;
END;
$$;

CREATE TRIGGER execution_events_notify AFTER INSERT ON execution_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_notify_execution();

CREATE TRIGGER execution_logs_notify AFTER INSERT ON execution_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_notify_execution();
