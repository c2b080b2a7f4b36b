-- Followers read events, log lines and the cluster feed by id after a cursor. A bigserial id
-- is drawn when a row is written, not when it commits: a row with a lower id could commit
-- after one with a higher id, after a follower had moved its cursor past it, and be skipped.
-- Here ids are drawn under a lock held until commit, so rows commit in id order:
-- an execution's events and lines under a lock on the execution's row (writers of different
-- executions do not wait for each other), the cluster feed under one lock of its own.
-- Numbered 0016 to leave room for migrations written in parallel.

CREATE FUNCTION aegis_execution_row_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- FOR NO KEY UPDATE: writers of one execution queue here; the foreign key's own check
    -- (FOR KEY SHARE) and readers are not blocked.
    PERFORM 1 FROM executions WHERE id = NEW.execution_id FOR NO KEY UPDATE;
    NEW.id := nextval(TG_ARGV[0]::regclass);
    RETURN NEW;
END;
$$;

CREATE TRIGGER execution_events_ordered_id BEFORE INSERT ON execution_events
    FOR EACH ROW EXECUTE FUNCTION aegis_execution_row_id('execution_events_id_seq');

CREATE TRIGGER execution_logs_ordered_id BEFORE INSERT ON execution_logs
    FOR EACH ROW EXECUTE FUNCTION aegis_execution_row_id('execution_logs_id_seq');

CREATE FUNCTION aegis_cluster_event_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Two 32-bit keys: a space of their own, apart from the migrations' one 64-bit key.
    PERFORM pg_advisory_xact_lock(1095059273, 16);
    NEW.id := nextval('cluster_events_id_seq'::regclass);
    RETURN NEW;
END;
$$;

CREATE TRIGGER cluster_events_ordered_id BEFORE INSERT ON cluster_events
    FOR EACH ROW EXECUTE FUNCTION aegis_cluster_event_id();
