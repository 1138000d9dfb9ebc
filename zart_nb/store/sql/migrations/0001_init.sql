-- zart-nb schema, version 1.
--
-- Applied with search_path set to the zart schema (ZART_SCHEMA, default "zart"), so
-- no name here is schema-qualified.
--
-- The model: a run is one execution history of a durable body. Its journal is the
-- steps table, which is also the task queue of the fan-out: a child is a step row of
-- kind 'child' that workers claim with FOR UPDATE SKIP LOCKED. `generation` counts
-- restarts: a restart starts a new generation and keeps the old rows as history.
-- Large results live once per content in payloads, addressed by their hash.

CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    name          text NOT NULL,
    namespace     text NOT NULL DEFAULT 'default',
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('pending', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
    generation    integer NOT NULL DEFAULT 1,
    input         bytea,                -- signed envelope of (args, kwargs)
    body          bytea,                -- signed envelope of the body callable (resume, detach)
    body_source   text,
    options       jsonb NOT NULL DEFAULT '{}',
    result        bytea,
    result_hash   bytea,
    error         text,
    error_payload bytea,
    owner         text,                 -- "host:pid" of the process executing the body
    owner_host    text,
    owner_pid     integer,
    lease_until   timestamptz,
    inflight_step text,                 -- the sequential step the owner is executing now
    inflight_attempt integer,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_pending ON runs (namespace, created_at) WHERE status = 'pending';

CREATE TABLE payloads (
    hash       bytea PRIMARY KEY,
    data       bytea NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE payloads ALTER COLUMN data SET STORAGE EXTERNAL;  -- already compressed-ish; skip pglz

-- No foreign key to runs: its check would lock the run's row on every step commit,
-- the hot path. Steps are removed with their run by the code that removes runs.
CREATE TABLE steps (
    run_id        text NOT NULL,
    generation    integer NOT NULL,
    name          text NOT NULL,
    kind          text NOT NULL
                  CHECK (kind IN ('step', 'child', 'sleep', 'event', 'capture', 'now', 'cell')),
    status        text NOT NULL
                  CHECK (status IN ('scheduled', 'running', 'completed', 'failed')),
    seq           integer,
    namespace     text NOT NULL DEFAULT 'default',
    code_fp       bytea,
    args_fp       bytea,
    task          bytea,                -- child: signed envelope of (fn, args, kwargs)
    result        bytea,                -- small results inline
    result_hash   bytea,                -- large results in payloads
    result_size   bigint,
    error         text,
    error_kind    text CHECK (error_kind IN ('business', 'framework')),
    error_payload bytea,
    traceback     text,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 1,
    retry         jsonb,                -- the retry policy of a child, for workers
    timeout_s     double precision,
    not_before    timestamptz,          -- child: retry backoff; sleep: wake time
    lease_until   timestamptz,
    worker        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (run_id, generation, name)
);
CREATE INDEX steps_queue ON steps (namespace, not_before NULLS FIRST, created_at)
    WHERE kind = 'child' AND status = 'scheduled';
CREATE INDEX steps_leased ON steps (lease_until) WHERE kind = 'child' AND status = 'running';
CREATE INDEX steps_result_hash ON steps (result_hash) WHERE result_hash IS NOT NULL;

-- The history of attempts that did not end a step: failed tries that were retried,
-- failures, and results superseded by a rerun. No foreign key to steps: a rerun
-- removes the step row and keeps its history here.
CREATE TABLE step_attempts (
    run_id      text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    generation  integer NOT NULL,
    name        text NOT NULL,
    attempt     integer NOT NULL,
    status      text NOT NULL,
    error       text,
    worker      text,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, generation, name, attempt)
);

CREATE TABLE events (
    run_id  text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name    text NOT NULL,
    payload bytea NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name)
);

-- Wake-ups. Channel zart_work (payload: namespace) tells workers that children are
-- ready; channel zart_run (payload: run_id) tells waiters and progress widgets that
-- something of that run changed. NOTIFY folds identical payloads of one transaction.
CREATE FUNCTION notify_step_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'scheduled' THEN
        PERFORM pg_notify('zart_work', NEW.namespace);
    END IF;
    PERFORM pg_notify('zart_run', NEW.run_id);
    RETURN NULL;
END $$;

CREATE TRIGGER steps_notify AFTER INSERT OR UPDATE OF status ON steps
    FOR EACH ROW WHEN (NEW.kind = 'child') EXECUTE FUNCTION notify_step_v1();

CREATE FUNCTION notify_run_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        PERFORM pg_notify('zart_work', NEW.namespace);
    END IF;
    PERFORM pg_notify('zart_run', NEW.run_id);
    RETURN NULL;
END $$;

CREATE FUNCTION notify_event_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('zart_run', NEW.run_id);
    RETURN NULL;
END $$;

CREATE TRIGGER runs_notify AFTER INSERT OR UPDATE OF status ON runs
    FOR EACH ROW EXECUTE FUNCTION notify_run_v1();
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION notify_event_v1();
