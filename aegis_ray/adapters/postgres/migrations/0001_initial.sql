-- Executions, their history (events, logs, attempts), registered nodes and API tokens.

CREATE TABLE executions (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text,
    manifest    jsonb NOT NULL,
    state       text NOT NULL,
    attempt     integer NOT NULL DEFAULT 1,
    max_retries integer NOT NULL,
    timeout_s   double precision,
    version     bigint NOT NULL DEFAULT 1,
    -- Why it failed or was cancelled, or why it is still waiting.
    reason      text,
    node_id     text,
    exit_code   integer,
    workflow_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
-- Listing pages through one tenant's executions newest first; id breaks ties.
CREATE INDEX executions_tenant_created ON executions (tenant_id, created_at DESC, id DESC);
CREATE INDEX executions_state ON executions (state);

CREATE TABLE execution_events (
    id           bigserial PRIMARY KEY,
    execution_id uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    ts           timestamptz NOT NULL DEFAULT now(),
    attempt      integer,
    kind         text NOT NULL CHECK (kind IN ('state', 'info', 'placement')),
    from_state   text,
    to_state     text,
    message      text NOT NULL DEFAULT '',
    node_id      text
);
CREATE INDEX execution_events_execution ON execution_events (execution_id, id);

CREATE TABLE execution_logs (
    id           bigserial PRIMARY KEY,
    execution_id uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    ts           timestamptz NOT NULL,
    stream       text NOT NULL,
    line         text NOT NULL
);
CREATE INDEX execution_logs_execution ON execution_logs (execution_id, id);

CREATE TABLE execution_attempts (
    execution_id    uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    node_id         text,
    ray_node_id     text,
    placement_group text,
    started_at      timestamptz,
    ended_at        timestamptz,
    outcome         text,
    reason          text,
    PRIMARY KEY (execution_id, attempt)
);

CREATE TABLE nodes (
    id             text PRIMARY KEY,
    type           text,
    region         text,
    tags           jsonb NOT NULL DEFAULT '[]',
    resources      jsonb NOT NULL DEFAULT '{}',
    ray_node_id    text,
    address        text,
    version        text,
    status         text,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz,
    labels         jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    -- sha256 hex of the secret; the secret itself is never stored.
    token_hash  text NOT NULL UNIQUE,
    tenant_id   text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'user', 'join')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
