-- Every query zart-nb runs, one named block each: "-- name: NAME", purpose lines, the
-- query. Loaded once by store/sql.py; the store module of each concern names the blocks
-- it runs (a test checks that each block is used). Run with search_path on zart's schema.
--
-- Wake-ups of children (migration 0003): each statement that inserts children or changes
-- their status notifies by itself, once per distinct payload, delivered at commit:
-- zart_work (namespace) when children become 'scheduled', zart_run (run_id) for any. Its
-- `notified` WITH calls notify_children_v1 (migration 0003) over the rows changed, one
-- row whatever their number, and the statement's result is
-- those rows joined to its one row: PostgreSQL evaluates a SELECT in WITH only as far as
-- something reads it, and a join's row needs both sides, so the wake-ups are sent exactly
-- when a row changed. The result is not filtered after the join (a filter could leave the
-- join nothing to read): a caller that wants some of the rows picks them itself.

-- ============================================================================= runs
-- name: claim_run
-- Create a run, or become the owner of one whose owner is gone (none, an expired lease,
-- or known dead), in one statement. A completed run is claimed only to be replayed
-- (reopen). No row: the run exists and is busy or ended; the caller reads it.
INSERT INTO runs AS r (run_id, name, namespace, input, options, status, owner, owner_host,
                       owner_pid, lease_until, started_at)
VALUES (%(run_id)s, %(name)s, %(namespace)s, %(input)s, %(options)s, 'running', %(owner)s,
        %(host)s, %(pid)s, now() + make_interval(secs => %(lease)s), now())
ON CONFLICT (run_id) DO UPDATE
SET owner = EXCLUDED.owner, owner_host = EXCLUDED.owner_host, owner_pid = EXCLUDED.owner_pid,
    lease_until = EXCLUDED.lease_until, status = 'running', error = NULL,
    error_payload = NULL, finished_at = NULL,
    started_at = CASE WHEN r.status = 'pending' THEN now() ELSE r.started_at END,
    updated_at = now()
WHERE (r.status NOT IN ('completed', 'cancelled') OR (%(reopen)s AND r.status = 'completed'))
  AND (r.owner IS NULL OR r.owner = %(owner)s OR r.lease_until < now()
       OR r.owner = %(dead_owner)s)
RETURNING r.generation, r.options, (r.xmax = 0) AS created

-- name: keep_body
-- Keep, once, what executes a new run again elsewhere: its pickled body and its source.
UPDATE runs SET body = %(body)s, body_source = %(body_source)s WHERE run_id = %(run_id)s

-- name: get_run
-- One run as stored, without its body.
SELECT run_id, name, namespace, status, generation, input, options, result, result_hash,
       error, error_payload, owner, owner_host, owner_pid, lease_until < now() AS lease_expired,
       created_at, started_at, finished_at
FROM runs WHERE run_id = %(run_id)s

-- name: get_run_detail
-- One run as stored, with the counts of steps in its current generation.
SELECT r.run_id, r.name, r.namespace, r.status, r.generation, r.input, r.options, r.result,
       r.result_hash, r.error, r.error_payload, r.owner, r.owner_host, r.owner_pid,
       r.lease_until < now() AS lease_expired, r.created_at, r.started_at, r.finished_at,
       count(s.name) AS steps_total,
       count(s.name) FILTER (WHERE s.status = 'completed') AS steps_done,
       count(s.name) FILTER (WHERE s.status = 'failed') AS steps_failed
FROM runs r LEFT JOIN steps s ON s.run_id = r.run_id AND s.generation = r.generation
WHERE r.run_id = %(run_id)s
GROUP BY r.run_id

-- name: get_run_body
-- What a worker or another notebook needs to execute a run: body, source, input, options.
SELECT run_id, name, namespace, status, generation, body, body_source, input, options
FROM runs WHERE run_id = %(run_id)s

-- name: run_status
-- The status of one run (a waiting body woken by a change of its run looks for a cancel).
SELECT status FROM runs WHERE run_id = %(run_id)s

-- name: list_runs
-- Runs, newest first, optionally filtered by status and durable name.
SELECT r.run_id, r.name, r.status, r.generation, r.owner, r.created_at, r.started_at,
       r.finished_at, r.error,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation) AS steps_total,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation
           AND s.status = 'completed') AS steps_done,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation
           AND s.status = 'failed') AS steps_failed
FROM runs r
WHERE (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(name)s::text IS NULL OR r.name = %(name)s)
ORDER BY r.created_at DESC, r.run_id
LIMIT %(limit)s

-- name: renew_run_lease
-- Heartbeat of the body's owner; returns the status so that a cancel is noticed.
UPDATE runs SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE run_id = %(run_id)s AND owner = %(owner)s
RETURNING status

-- name: set_run_status
-- running <-> waiting while the body waits; only by its owner.
UPDATE runs SET status = %(status)s, updated_at = now()
WHERE run_id = %(run_id)s AND owner = %(owner)s AND status IN ('running', 'waiting')

-- name: finish_run
-- The body ended: store its result or error and give up ownership.
WITH payload AS (
    INSERT INTO payloads (hash, data, size)
    SELECT %(hash)s::bytea, %(data)s::bytea, length(%(data)s::bytea) WHERE %(data)s::bytea IS NOT NULL
    ON CONFLICT (hash) DO NOTHING
)
UPDATE runs
SET status = %(status)s, result = %(result)s::bytea, result_hash = %(hash)s::bytea, error = %(error)s,
    error_payload = %(error_payload)s, finished_at = now(), updated_at = now(),
    owner = NULL, owner_pid = NULL, lease_until = NULL
WHERE run_id = %(run_id)s AND owner = %(owner)s AND status IN ('running', 'waiting')
RETURNING status

-- name: release_run
-- Give up ownership without finishing (interrupted, suspended): another process may go on.
UPDATE runs SET owner = NULL, owner_pid = NULL, lease_until = NULL,
       status = CASE WHEN status IN ('running', 'waiting') THEN 'failed' ELSE status END,
       error = CASE WHEN status IN ('running', 'waiting') THEN %(error)s ELSE error END,
       updated_at = now()
WHERE run_id = %(run_id)s AND owner = %(owner)s

-- name: cancel_run
-- Cancel a run that has not ended; its owner notices at its next heartbeat or step.
UPDATE runs SET status = 'cancelled', finished_at = now(), updated_at = now(),
       error = 'cancelled'
WHERE run_id = %(run_id)s AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING run_id

-- name: restart_run
-- Start a new generation: the old steps stay as history, the next execution starts afresh.
UPDATE runs SET generation = generation + 1, status = 'pending', result = NULL,
       inflight_step = NULL, inflight_attempt = NULL,
       result_hash = NULL, error = NULL, error_payload = NULL, finished_at = NULL,
       owner = NULL, owner_pid = NULL, lease_until = NULL, updated_at = now()
WHERE run_id = %(run_id)s AND (owner IS NULL OR lease_until < now())
RETURNING generation

-- name: lock_idle_run
-- Lock a run for a change of its journal (rerun, retry_step), unless a live process owns it.
-- No row: there is no such run, or it is being executed.
SELECT generation, owner IS NOT NULL AND lease_until >= now() AS busy
FROM runs WHERE run_id = %(run_id)s
FOR UPDATE

-- name: forget_steps
-- Drop named steps of the current generation (kept in step_attempts) so that they run again.
WITH gone AS (
    DELETE FROM steps s USING runs r
    WHERE r.run_id = %(run_id)s AND s.run_id = r.run_id AND s.generation = r.generation
      AND s.name = ANY(%(names)b::text[])
    RETURNING s.run_id, s.generation, s.name, s.attempts, s.status, s.error, s.worker,
              s.started_at
), kept AS (
    INSERT INTO step_attempts (run_id, generation, name, attempt, status, error, worker, started_at)
    SELECT run_id, generation, name, attempts, 'superseded:' || status, error, worker, started_at
    FROM gone
    ON CONFLICT DO NOTHING
)
SELECT name FROM gone

-- name: reopen_run
-- A run whose steps were reset goes back to pending, to be executed again.
UPDATE runs SET status = 'pending', result = NULL, result_hash = NULL, error = NULL,
       error_payload = NULL, finished_at = NULL, updated_at = now()
WHERE run_id = %(run_id)s AND status IN ('completed', 'failed', 'cancelled')

-- name: detach_run
-- Hand a run to the worker fleet, creating it if needed: it waits, pending, for a worker to
-- execute its stored body. No row: it is completed or a live process executes it.
INSERT INTO runs AS r (run_id, name, namespace, input, body, body_source, options, status)
VALUES (%(run_id)s, %(name)s, %(namespace)s, %(input)s, %(body)s, %(body_source)s,
        %(options)s::jsonb || '{"detach": true}'::jsonb, 'pending')
ON CONFLICT (run_id) DO UPDATE
SET status = 'pending', body = EXCLUDED.body, input = EXCLUDED.input,
    body_source = coalesce(EXCLUDED.body_source, r.body_source),
    options = r.options || '{"detach": true}'::jsonb, error = NULL, error_payload = NULL,
    finished_at = NULL, updated_at = now()
WHERE r.status <> 'completed' AND (r.owner IS NULL OR r.lease_until < now())
RETURNING run_id

-- name: claim_detached_run
-- A worker takes a detached run that is pending, or whose executing worker died.
UPDATE runs
SET owner = %(owner)s, owner_host = %(host)s, owner_pid = %(pid)s,
    lease_until = now() + make_interval(secs => %(lease)s), status = 'running',
    started_at = CASE WHEN status = 'pending' THEN now() ELSE started_at END, updated_at = now()
WHERE run_id = (
    SELECT run_id FROM runs
    WHERE namespace = %(namespace)s AND options @> '{"detach": true}'::jsonb
      AND (status = 'pending' OR (status IN ('running', 'waiting') AND lease_until < now()))
    ORDER BY created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING run_id, name, namespace, status, generation, body, body_source, input, options

-- ========================================================================== journal

-- name: load_journal
-- A run's whole journal in one query; large results stay in payloads until asked for.
-- The step that was in flight when the last owner stopped comes as a 'running' row.
SELECT name, kind, status, seq, code_fp, args_fp, result, result_hash, error, error_kind,
       error_payload, traceback, attempts, not_before
FROM steps WHERE run_id = %(run_id)s AND generation = %(generation)s
UNION ALL
SELECT inflight_step, 'step', 'running', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       inflight_attempt, NULL
FROM runs r WHERE run_id = %(run_id)s AND inflight_step IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.run_id AND s.generation = %(generation)s
                  AND s.name = r.inflight_step)

-- name: mark_inflight
-- Note which step the owner is executing (its attempt counted). Not flushed to disk
-- before the commit returns: it only tells a later execution that this attempt happened.
WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE runs SET inflight_step = %(name)s, inflight_attempt = %(attempt)s::integer
FROM cfg WHERE run_id = %(run_id)s AND owner = %(owner)s

-- name: complete_step
-- Commit a step's result, inline or (with hash and data) once per content in payloads,
-- in one round trip; a hash without data names a large result's manifest, stored just
-- before. Only while this process still owns the run and it is not cancelled.
WITH payload AS (
    INSERT INTO payloads (hash, data, size)
    SELECT %(hash)s::bytea, %(data)s::bytea, length(%(data)s::bytea) WHERE %(data)s::bytea IS NOT NULL
    ON CONFLICT (hash) DO NOTHING
)
INSERT INTO steps AS s (run_id, generation, name, kind, status, seq, code_fp, args_fp, result,
                        result_hash, result_size, attempts, max_attempts, started_at,
                        finished_at)
SELECT %(run_id)s, %(generation)s, %(name)s, %(kind)s, 'completed', %(seq)s, %(code_fp)s::bytea,
       %(args_fp)s::bytea, %(result)s::bytea, %(hash)s::bytea, %(size)s, %(attempt)s, %(max_attempts)s,
       %(started_at)s::timestamptz, now()
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
              AND status IN ('running', 'waiting'))
ON CONFLICT (run_id, generation, name) DO UPDATE
SET status = 'completed', kind = EXCLUDED.kind, seq = EXCLUDED.seq, code_fp = EXCLUDED.code_fp,
    args_fp = EXCLUDED.args_fp, result = EXCLUDED.result, result_hash = EXCLUDED.result_hash,
    result_size = EXCLUDED.result_size, attempts = EXCLUDED.attempts,
    error = NULL, error_kind = NULL, error_payload = NULL, traceback = NULL,
    started_at = EXCLUDED.started_at, finished_at = now()

-- name: insert_step
-- Commit the result of a step that has no row yet, inline or naming a large result's
-- manifest stored just before: the common case (a step's first execution), so a plain
-- INSERT, with no payload to store and no conflict to resolve. Only while this process
-- still owns the run and it is not cancelled. A row there after all is a unique
-- violation: the caller commits by complete_step instead.
INSERT INTO steps (run_id, generation, name, kind, status, seq, code_fp, args_fp, result,
                   result_hash, result_size, attempts, max_attempts, started_at, finished_at)
SELECT %(run_id)s, %(generation)s, %(name)s, %(kind)s, 'completed', %(seq)s, %(code_fp)s::bytea,
       %(args_fp)s::bytea, %(result)s::bytea, %(hash)s::bytea, %(size)s, %(attempt)s,
       %(max_attempts)s, %(started_at)s::timestamptz, now()
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
              AND status IN ('running', 'waiting'))

-- name: complete_steps
-- Commit the results of several steps of one execution at once (async steps that
-- completed together), large ones once per content in payloads, in one round trip;
-- only while this process still owns the run and it is not cancelled: all or none.
WITH payload AS (
    INSERT INTO payloads (hash, data, size)
    SELECT p.hash, p.data, length(p.data)
    FROM unnest(%(payload_hashes)b::bytea[], %(payload_data)b::bytea[]) AS p(hash, data)
    ON CONFLICT (hash) DO NOTHING
)
INSERT INTO steps AS s (run_id, generation, name, kind, status, seq, code_fp, args_fp, result,
                        result_hash, result_size, attempts, max_attempts, started_at,
                        finished_at)
SELECT %(run_id)s, %(generation)s, c.name, c.kind, 'completed', c.seq, c.code_fp, c.args_fp,
       c.result, c.result_hash, c.size, c.attempt, c.max_attempts, c.started_at, now()
FROM unnest(%(names)b::text[], %(kinds)b::text[], %(seqs)b::integer[], %(code_fps)b::bytea[],
            %(args_fps)b::bytea[], %(results)b::bytea[], %(hashes)b::bytea[],
            %(sizes)b::bigint[], %(attempts)b::integer[], %(max_attempts)b::integer[],
            %(started_ats)b::timestamptz[])
     AS c(name, kind, seq, code_fp, args_fp, result, result_hash, size, attempt, max_attempts,
          started_at)
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
              AND status IN ('running', 'waiting'))
ON CONFLICT (run_id, generation, name) DO UPDATE
SET status = 'completed', kind = EXCLUDED.kind, seq = EXCLUDED.seq, code_fp = EXCLUDED.code_fp,
    args_fp = EXCLUDED.args_fp, result = EXCLUDED.result, result_hash = EXCLUDED.result_hash,
    result_size = EXCLUDED.result_size, attempts = EXCLUDED.attempts,
    error = NULL, error_kind = NULL, error_payload = NULL, traceback = NULL,
    started_at = EXCLUDED.started_at, finished_at = now()

-- name: fail_step
-- A step failed for good: keep its exception and traceback for the next execution.
WITH attempt AS (
    INSERT INTO step_attempts (run_id, generation, name, attempt, status, error, worker, started_at)
    VALUES (%(run_id)s, %(generation)s, %(name)s, %(attempt)s, 'failed', %(error)s, %(worker)s,
            %(started_at)s)
    ON CONFLICT DO NOTHING
)
INSERT INTO steps AS s (run_id, generation, name, kind, status, seq, code_fp, args_fp, error,
                        error_kind, error_payload, traceback, attempts, started_at, finished_at)
VALUES (%(run_id)s, %(generation)s, %(name)s, %(kind)s, 'failed', %(seq)s, %(code_fp)s::bytea,
        %(args_fp)s::bytea, %(error)s, %(error_kind)s, %(error_payload)s, %(traceback)s,
        %(attempt)s, %(started_at)s, now())
ON CONFLICT (run_id, generation, name) DO UPDATE
SET status = 'failed', code_fp = EXCLUDED.code_fp, args_fp = EXCLUDED.args_fp,
    error = EXCLUDED.error, error_kind = EXCLUDED.error_kind,
    error_payload = EXCLUDED.error_payload, traceback = EXCLUDED.traceback,
    attempts = EXCLUDED.attempts, finished_at = now(), lease_until = NULL

-- name: record_attempt
-- Keep a failed attempt that will be retried (history of retries).
INSERT INTO step_attempts (run_id, generation, name, attempt, status, error, worker, started_at)
VALUES (%(run_id)s, %(generation)s, %(name)s, %(attempt)s, %(status)s, %(error)s, %(worker)s,
        %(started_at)s)
ON CONFLICT DO NOTHING

-- name: start_wait
-- A sleep or an event wait begins: its wake time or deadline is stored, so that a
-- restarted body waits only for the remainder.
INSERT INTO steps (run_id, generation, name, kind, status, seq, not_before, attempts, started_at)
SELECT %(run_id)s, %(generation)s, %(name)s, %(kind)s, 'running', %(seq)s,
       %(not_before)s::timestamptz, 1, now()
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
              AND status IN ('running', 'waiting'))
ON CONFLICT (run_id, generation, name) DO NOTHING

-- name: get_step
-- One step's stored outcome, in the run's current generation.
SELECT s.name, s.kind, s.status, s.result, s.result_hash, s.error, s.error_kind,
       s.error_payload, s.traceback, s.attempts
FROM steps s JOIN runs r ON s.run_id = r.run_id AND s.generation = r.generation
WHERE r.run_id = %(run_id)s AND s.name = %(name)s

-- name: list_steps
-- The steps of a run's current generation, in execution order.
SELECT s.name, s.kind, s.status, s.seq, s.attempts, s.max_attempts, s.error, s.error_kind,
       s.traceback, s.worker, s.result_size, s.created_at, s.started_at, s.finished_at,
       s.not_before, s.result_hash IS NOT NULL AS out_of_line
FROM steps s JOIN runs r ON s.run_id = r.run_id AND s.generation = r.generation
WHERE r.run_id = %(run_id)s
ORDER BY s.seq NULLS LAST, s.created_at, s.name

-- name: step_attempts
-- The attempt history of a run's current generation: of one step, or of all (name NULL).
SELECT a.name, a.attempt, a.status, a.error, a.worker, a.started_at, a.finished_at
FROM step_attempts a JOIN runs r ON a.run_id = r.run_id AND a.generation = r.generation
WHERE r.run_id = %(run_id)s AND (%(name)s::text IS NULL OR a.name = %(name)s)
ORDER BY a.name, a.attempt

-- name: set_durability
-- Commit durability of this session: 'on' waits for the WAL flush, 'off' does not.
SELECT set_config('synchronous_commit', %(value)s, false)

-- ========================================================================= payloads

-- name: get_payload
-- A large result, by its content hash: the whole envelope, or the manifest of its chunks.
SELECT data FROM payloads WHERE hash = %(hash)s

-- name: commit_without_flush
-- The transaction writing a large payload's chunks commits without waiting for the WAL
-- flush: the step commit naming its manifest comes later and waits for it, and the WAL
-- is flushed in order.
SELECT set_config('synchronous_commit', 'off', true)

-- name: touch_chunks
-- The ones of these chunks the database has, marked as used now and locked until the
-- payload naming them commits: gc skips locked chunks and keeps recently used ones.
UPDATE chunks SET used_at = now() WHERE hash = ANY(%(hashes)b::bytea[]) RETURNING hash

-- name: insert_chunk
-- One chunk of a large payload (written by another payload at the same moment: kept).
INSERT INTO chunks (hash, data) VALUES (%(hash)s, %(data)s)
ON CONFLICT (hash) DO UPDATE SET used_at = now()

-- name: insert_manifest
-- The manifest of a large payload and the chunks it names. A manifest stored before is
-- marked as written now, so that gc keeps it until the step naming it has committed.
WITH manifest AS (
    INSERT INTO payloads (hash, data, size) VALUES (%(hash)s, %(data)s, %(size)s)
    ON CONFLICT (hash) DO UPDATE SET created_at = now()
)
INSERT INTO payload_chunks (payload, chunk)
SELECT %(hash)s, c FROM unnest(%(chunks)b::bytea[]) AS c
ON CONFLICT DO NOTHING

-- name: missing_chunks
-- The ones of these chunks the database does not have (checked before a manifest is read).
SELECT h AS hash FROM unnest(%(hashes)b::bytea[]) AS h
WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = h)

-- name: get_chunk
-- One chunk's stored bytes.
SELECT data FROM chunks WHERE hash = %(hash)s

-- name: insert_children
-- Queue a batch of children in one statement; re-queues ones that
-- failed or changed. Only while this process owns the run. When any was queued, wakes
-- the namespace's workers and the run's waiters (once each, delivered at commit: see
-- migration 0003); every row has the same run and namespace, so no column is read back.
WITH queued AS (
    INSERT INTO steps AS s (run_id, generation, name, kind, status, seq, namespace, code_fp,
                            args_fp, task, max_attempts, retry, timeout_s, attempts)
    SELECT %(run_id)s, %(generation)s, c.name, 'child', 'scheduled', c.seq, %(namespace)s,
           c.code_fp, c.args_fp, c.task, c.max_attempts, c.retry::jsonb, c.timeout_s, 0
    FROM unnest(%(names)b::text[], %(seqs)b::integer[], %(code_fps)b::bytea[],
                %(args_fps)b::bytea[], %(tasks)b::bytea[], %(max_attempts)b::integer[],
                %(retries)b::text[], %(timeouts)b::float8[])
         AS c(name, seq, code_fp, args_fp, task, max_attempts, retry, timeout_s)
    WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
                  AND status IN ('running', 'waiting'))
    ON CONFLICT (run_id, generation, name) DO UPDATE
    SET status = 'scheduled', kind = 'child', seq = EXCLUDED.seq, namespace = EXCLUDED.namespace,
        code_fp = EXCLUDED.code_fp, args_fp = EXCLUDED.args_fp, task = EXCLUDED.task,
        max_attempts = s.attempts + EXCLUDED.max_attempts, retry = EXCLUDED.retry,
        timeout_s = EXCLUDED.timeout_s, result = NULL, result_hash = NULL, error = NULL,
        error_kind = NULL, error_payload = NULL, traceback = NULL, not_before = NULL,
        lease_until = NULL, worker = NULL, finished_at = NULL
    WHERE s.status <> 'running'
    RETURNING 1
)
-- LIMIT 1 does not cut the INSERT short: a data-modifying WITH always runs to its end
SELECT notify_children_v1(ARRAY[%(run_id)s::text], ARRAY[%(namespace)s::text]) AS sent
FROM (SELECT FROM queued LIMIT 1) AS any_queued

-- name: children_outcomes
-- The finished children among the named ones (the body's wait).
SELECT name, status, attempts, result, result_hash, error, error_kind, error_payload
FROM steps
WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = ANY(%(names)b::text[])
  AND status IN ('completed', 'failed')

-- name: claim_children
-- A worker takes up to `limit` ready children of runs that are not cancelled (their
-- runs notified).
WITH ready AS (
    SELECT s.run_id, s.generation, s.name
    FROM steps s
    WHERE s.kind = 'child' AND s.status = 'scheduled' AND s.namespace = %(namespace)s
      AND (s.not_before IS NULL OR s.not_before <= now())
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id AND r.status = 'cancelled')
    ORDER BY s.not_before NULLS FIRST, s.created_at, s.seq
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
), claimed AS (
    UPDATE steps s
    SET status = 'running', worker = %(worker)s, attempts = s.attempts + 1, started_at = now(),
        lease_until = now() + make_interval(secs => %(lease)s)
    FROM ready
    WHERE s.run_id = ready.run_id AND s.generation = ready.generation AND s.name = ready.name
    RETURNING s.run_id, s.generation, s.name, s.task, s.attempts, s.max_attempts, s.retry,
              s.timeout_s, s.code_fp, s.args_fp
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id), NULL) AS sent FROM claimed
)
SELECT c.run_id, c.generation, c.name, c.task, c.attempts, c.max_attempts, c.retry, c.timeout_s,
       c.code_fp, c.args_fp
FROM claimed c, notified

-- name: claim_run_children
-- A body that runs its children on an executor takes the named ones as their worker
-- `executor:<owner>`: those queued and ready, and those whose holder is gone (its lease
-- expired, or an earlier body of this run held them: one body owns a run at a time),
-- their attempt counted. A child lost two times beyond its attempts fails instead, as in
-- requeue_expired_children. Only while this process owns the run. Every child changed
-- comes back with its new status (the caller keeps the 'running' ones); the run notified.
WITH mine AS (
    SELECT s.run_id, s.generation, s.name,
           s.status = 'running' AND s.attempts >= s.max_attempts + 2 AS lost
    FROM steps s
    WHERE s.run_id = %(run_id)s AND s.generation = %(generation)s AND s.name = ANY(%(names)b::text[])
      AND s.kind = 'child'
      AND ((s.status = 'scheduled' AND (s.not_before IS NULL OR s.not_before <= now()))
           OR (s.status = 'running' AND (s.lease_until < now()
               OR (s.worker LIKE 'executor:%%' AND s.worker <> %(worker)s))))
      AND EXISTS (SELECT 1 FROM runs r WHERE r.run_id = %(run_id)s AND r.owner = %(owner)s
                  AND r.status IN ('running', 'waiting'))
    FOR UPDATE OF s SKIP LOCKED
), taken AS (
    UPDATE steps s
    SET status = CASE WHEN mine.lost THEN 'failed' ELSE 'running' END,
        attempts = CASE WHEN mine.lost THEN s.attempts ELSE s.attempts + 1 END,
        worker = CASE WHEN mine.lost THEN NULL ELSE %(worker)s END,
        lease_until = CASE WHEN mine.lost THEN NULL
                           ELSE now() + make_interval(secs => %(lease)s) END,
        started_at = CASE WHEN mine.lost THEN s.started_at ELSE now() END,
        error = CASE WHEN mine.lost THEN 'worker lost: its holder went away ' || s.attempts
                                         || ' times' ELSE s.error END,
        error_kind = CASE WHEN mine.lost THEN 'framework' ELSE s.error_kind END,
        error_payload = CASE WHEN mine.lost THEN NULL ELSE s.error_payload END,
        traceback = CASE WHEN mine.lost THEN NULL ELSE s.traceback END,
        finished_at = CASE WHEN mine.lost THEN now() END
    FROM mine
    WHERE s.run_id = mine.run_id AND s.generation = mine.generation AND s.name = mine.name
    RETURNING s.run_id, s.generation, s.name, s.task, s.attempts, s.max_attempts, s.retry,
              s.timeout_s, s.code_fp, s.args_fp, s.status
), notified AS MATERIALIZED (
    SELECT notify_children_v1(ARRAY[%(run_id)s::text], NULL) AS sent
    FROM (SELECT FROM taken LIMIT 1) AS any_taken
)
SELECT t.status, t.run_id, t.generation, t.name, t.task, t.attempts, t.max_attempts, t.retry,
       t.timeout_s, t.code_fp, t.args_fp
FROM taken t, notified

-- name: renew_child_leases
-- A worker's heartbeat over every child it holds.
UPDATE steps SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE kind = 'child' AND status = 'running' AND worker = %(worker)s

-- name: complete_children
-- Commit a batch of children's results at once (large ones into payloads). A result is
-- written only for the version of the child that produced it, and only while nobody
-- else runs it: by the worker that still holds the attempt, or, when its lease ran out
-- meanwhile (a worker frozen), while the child waits in the queue unclaimed. A committed
-- result is written once, and never over another worker's attempt. Their runs notified.
WITH done AS (
    SELECT * FROM unnest(%(run_ids)b::text[], %(generations)b::integer[], %(names)b::text[],
                         %(attempts)b::integer[], %(code_fps)b::bytea[], %(args_fps)b::bytea[],
                         %(results)b::bytea[], %(hashes)b::bytea[], %(sizes)b::bigint[])
        AS d(run_id, generation, name, attempt, code_fp, args_fp, result, result_hash, size)
), payload AS (
    INSERT INTO payloads (hash, data, size)
    SELECT p.hash, p.data, length(p.data)
    FROM unnest(%(payload_hashes)b::bytea[], %(payload_data)b::bytea[]) AS p(hash, data)
    ON CONFLICT (hash) DO NOTHING
), completed AS (
    UPDATE steps s
    SET status = 'completed', result = done.result, result_hash = done.result_hash,
        result_size = done.size, finished_at = now(), lease_until = NULL, worker = %(worker)s
    FROM done
    WHERE s.run_id = done.run_id AND s.generation = done.generation AND s.name = done.name
      AND s.code_fp IS NOT DISTINCT FROM done.code_fp
      AND s.args_fp IS NOT DISTINCT FROM done.args_fp
      AND (s.status = 'running' AND s.worker = %(worker)s AND s.attempts = done.attempt
           OR s.status = 'scheduled' AND s.worker IS NULL AND s.kind = 'child')
    RETURNING s.run_id, s.name
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id), NULL) AS sent FROM completed
)
SELECT c.name FROM completed c, notified

-- name: fail_child
-- A child raised: back in the queue after `retry_at`, or failed for good when it is NULL.
-- Written only by the worker that still holds the attempt that raised (a failure that
-- comes too late is not written over a child queued again: it will run again). The run
-- notified, and the namespace's workers when it is queued again. One row when written.
WITH attempt AS (
    INSERT INTO step_attempts (run_id, generation, name, attempt, status, error, worker, started_at)
    SELECT %(run_id)s, %(generation)s, %(name)s, %(attempt)s, 'failed', %(error)s, %(worker)s,
           started_at
    FROM steps
    WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
    ON CONFLICT DO NOTHING
), failed AS (
    UPDATE steps
    SET status = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN 'failed' ELSE 'scheduled' END,
        not_before = %(retry_at)s::timestamptz, error = %(error)s, error_kind = %(error_kind)s,
        error_payload = %(error_payload)s, traceback = %(traceback)s, worker = NULL,
        lease_until = NULL,
        finished_at = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN now() END
    WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
      AND attempts = %(attempt)s AND code_fp IS NOT DISTINCT FROM %(code_fp)s
      AND args_fp IS NOT DISTINCT FROM %(args_fp)s
      AND status = 'running' AND worker = %(worker)s
    RETURNING run_id, namespace, status
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id),
                           array_agg(namespace) FILTER (WHERE status = 'scheduled')) AS sent
    FROM failed
)
SELECT f.status FROM failed f, notified

-- name: retake_children
-- A worker whose connection was lost takes again the children it still holds: renewed
-- when it still has them; taken back when the server lost its claim (a crash: claims
-- do not wait for the WAL flush) or requeued them after their lease ran out, if nobody
-- claimed them since. The children returned are the ones it holds now, with their
-- attempt numbers; the others were claimed by other workers (or cancelled, changed).
-- Their runs notified.
WITH held AS (
    SELECT * FROM unnest(%(run_ids)b::text[], %(generations)b::integer[], %(names)b::text[],
                         %(attempts)b::integer[], %(code_fps)b::bytea[], %(args_fps)b::bytea[])
        AS h(run_id, generation, name, attempt, code_fp, args_fp)
), retaken AS (
    UPDATE steps s
    SET status = 'running', worker = %(worker)s, attempts = greatest(s.attempts, held.attempt),
        lease_until = now() + make_interval(secs => %(lease)s)
    FROM held
    WHERE s.run_id = held.run_id AND s.generation = held.generation AND s.name = held.name
      AND s.kind = 'child' AND s.code_fp IS NOT DISTINCT FROM held.code_fp
      AND s.args_fp IS NOT DISTINCT FROM held.args_fp
      AND (s.status = 'running' AND s.worker = %(worker)s
           OR s.status = 'scheduled' AND s.worker IS NULL
              AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id
                              AND r.status = 'cancelled'))
    RETURNING s.run_id, s.generation, s.name, s.attempts
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id), NULL) AS sent FROM retaken
)
SELECT t.run_id, t.generation, t.name, t.attempts FROM retaken t, notified

-- name: durable_transaction
-- This transaction's commit waits for the WAL flush, whatever the session's setting.
SELECT set_config('synchronous_commit', 'on', true)

-- name: release_children
-- A worker that stops gives back children it claimed but did not start (attempt undone),
-- waking the workers of their namespaces and their runs' waiters. One row per child.
WITH released AS (
    UPDATE steps SET status = 'scheduled', worker = NULL, lease_until = NULL,
           attempts = greatest(attempts - 1, 0)
    WHERE kind = 'child' AND status = 'running' AND worker = %(worker)s
      AND (run_id, generation, name) IN (
          SELECT * FROM unnest(%(run_ids)b::text[], %(generations)b::integer[],
                               %(names)b::text[]))
    RETURNING run_id, namespace
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id), array_agg(namespace)) AS sent FROM released
)
SELECT r.run_id FROM released r, notified

-- name: requeue_expired_children
-- Children whose worker stopped renewing its lease go back to the queue, their attempt
-- counted; after two losses beyond their attempts they fail: the worker keeps dying.
-- Not in the first `lease` seconds after the server started: a lease that ran out
-- while the server was down is left for its worker to renew when it reconnects. Their
-- runs notified, and the workers of the namespaces where children were queued again.
WITH expired AS (
    SELECT run_id, generation, name FROM steps
    WHERE kind = 'child' AND status = 'running' AND lease_until < now()
      AND pg_postmaster_start_time() < now() - make_interval(secs => %(lease)s)
    FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE steps s
    SET status = CASE WHEN s.attempts >= s.max_attempts + 2 THEN 'failed' ELSE 'scheduled' END,
        error = CASE WHEN s.attempts >= s.max_attempts + 2
                     THEN 'worker lost: its lease expired ' || s.attempts || ' times' END,
        error_kind = CASE WHEN s.attempts >= s.max_attempts + 2 THEN 'framework' END,
        finished_at = CASE WHEN s.attempts >= s.max_attempts + 2 THEN now() END,
        worker = NULL, lease_until = NULL
    FROM expired
    WHERE s.run_id = expired.run_id AND s.generation = expired.generation
      AND s.name = expired.name
    RETURNING s.run_id, s.name, s.namespace, s.status
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id),
                           array_agg(namespace) FILTER (WHERE status = 'scheduled')) AS sent
    FROM requeued
)
SELECT q.run_id, q.name, q.status FROM requeued q, notified

-- name: next_retry_in
-- Seconds until the earliest delayed child of a namespace is ready (NULL: none), so
-- that an idle worker wakes for a retry sooner than its slow poll.
SELECT extract(epoch FROM min(not_before) - now())::float8 AS seconds
FROM steps
WHERE kind = 'child' AND status = 'scheduled' AND namespace = %(namespace)s
  AND not_before > now()

-- name: retry_child
-- Put a failed child back in the queue with one more attempt allowed, waking the workers
-- of its namespace and its run's waiters.
WITH retried AS (
    UPDATE steps SET status = 'scheduled', not_before = NULL, max_attempts = attempts + 1,
           error = NULL, error_kind = NULL, error_payload = NULL, traceback = NULL,
           lease_until = NULL, worker = NULL, finished_at = NULL
    WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
      AND status = 'failed'
    RETURNING run_id, namespace
), notified AS MATERIALIZED (
    SELECT notify_children_v1(array_agg(run_id), array_agg(namespace)) AS sent FROM retried
)
SELECT r.run_id FROM retried r, notified

-- =========================================================================== events

-- name: insert_event
-- Deliver an event; the first one for a (run, name) wins.
INSERT INTO events (run_id, name, payload) VALUES (%(run_id)s, %(name)s, %(payload)s)

-- name: get_event
-- An event's payload, if it was sent.
SELECT payload FROM events WHERE run_id = %(run_id)s AND name = %(name)s

-- ========================================================================= progress

-- name: progress_snapshot
-- A progress widget's whole view of a run in one statement: the run, one character per
-- child in schedule order (s scheduled, y retrying, r running, c completed, p replayed:
-- completed before %(since)s, f failed) and the first failed children with their errors.
WITH r AS (
    SELECT run_id, name, status, generation, started_at, finished_at, error, now() AS db_now
    FROM runs WHERE run_id = %(run_id)s
), c AS (
    SELECT s.name, s.error, s.attempts,
           row_number() OVER (ORDER BY s.seq NULLS LAST, s.name) - 1 AS idx,
           CASE WHEN s.status = 'completed'
                     AND s.finished_at < coalesce(%(since)s::timestamptz, '-infinity') THEN 'p'
                WHEN s.status = 'completed' THEN 'c'
                WHEN s.status = 'failed' THEN 'f'
                WHEN s.status = 'running' THEN 'r'
                WHEN s.attempts > 0 OR s.not_before IS NOT NULL THEN 'y'
                ELSE 's' END AS state
    FROM steps s JOIN r ON s.run_id = r.run_id AND s.generation = r.generation
    WHERE s.kind = 'child'
)
SELECT r.*,
       (SELECT coalesce(string_agg(c.state, '' ORDER BY c.idx), '') FROM c) AS states,
       (SELECT coalesce(json_agg(json_build_object('index', f.idx, 'name', f.name,
                                                   'error', f.error, 'attempts', f.attempts)
                                 ORDER BY f.idx), '[]'::json)
        FROM (SELECT * FROM c WHERE c.state = 'f' ORDER BY c.idx LIMIT %(failed_limit)s) f)
           AS failed
FROM r

-- name: progress_child_at
-- The child at a position of the progress grid (schedule order), with its error and
-- traceback, for the widget's detail panel.
SELECT s.name, s.status, s.attempts, s.max_attempts, s.error, s.error_kind, s.traceback,
       s.worker, s.not_before, s.started_at, s.finished_at
FROM steps s JOIN runs r ON s.run_id = r.run_id AND s.generation = r.generation
WHERE r.run_id = %(run_id)s AND s.kind = 'child'
ORDER BY s.seq NULLS LAST, s.name
OFFSET %(index)s LIMIT 1

-- name: progress_replayed_until
-- When the last of the named children (replayed by the execution that shows the widget)
-- completed: children completed after it were completed by that execution.
SELECT max(s.finished_at) AS last_finished
FROM steps s JOIN runs r ON s.run_id = r.run_id AND s.generation = r.generation
WHERE r.run_id = %(run_id)s AND s.kind = 'child' AND s.status = 'completed'
  AND s.name = ANY(%(names)b::text[])

-- name: progress_now
-- The database's clock: the widget measures "replayed" and elapsed time on it.
SELECT now() AS db_now

-- =============================================================================== gc

-- name: gc_preview
-- What gc would remove: ended runs older than the cutoff, their steps, the payloads that
-- nothing else references (those of the doomed runs, and old orphans), and the chunks
-- that only those payloads name (or none, for long). Payloads and chunks younger than
-- the grace are kept: a payload being written is not named by its step yet.
WITH doomed AS (
    SELECT run_id FROM runs
    WHERE status = ANY(%(statuses)b::text[]) AND status IN ('completed', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(seconds)s)
), live AS (
    SELECT result_hash AS hash FROM steps
    WHERE result_hash IS NOT NULL AND run_id NOT IN (SELECT run_id FROM doomed)
    UNION
    SELECT result_hash FROM runs
    WHERE result_hash IS NOT NULL AND run_id NOT IN (SELECT run_id FROM doomed)
), theirs AS (
    SELECT result_hash AS hash FROM steps
    WHERE result_hash IS NOT NULL AND run_id IN (SELECT run_id FROM doomed)
    UNION
    SELECT result_hash FROM runs
    WHERE result_hash IS NOT NULL AND run_id IN (SELECT run_id FROM doomed)
), gone_payloads AS (
    SELECT p.hash FROM payloads p
    WHERE NOT EXISTS (SELECT 1 FROM live WHERE live.hash = p.hash)
      AND p.created_at < now() - make_interval(secs => greatest(%(seconds)s, %(grace)s))
      AND (p.hash IN (SELECT hash FROM theirs)
           OR p.created_at < now() - make_interval(secs => %(seconds)s))
)
SELECT (SELECT count(*) FROM doomed) AS runs,
       (SELECT count(*) FROM steps WHERE run_id IN (SELECT run_id FROM doomed)) AS steps,
       (SELECT count(*) FROM gone_payloads) AS payloads,
       (SELECT count(*) FROM chunks c
        WHERE c.used_at < now() - make_interval(secs => greatest(%(seconds)s, %(grace)s))
          AND NOT EXISTS (SELECT 1 FROM payload_chunks pc WHERE pc.chunk = c.hash
                          AND pc.payload NOT IN (SELECT hash FROM gone_payloads))) AS chunks

-- name: gc_lock_payloads
-- Held by each gc transaction: a step commit that inserts or reuses a payload waits
-- for it, so that gc never deletes a payload a concurrent commit is referencing.
LOCK TABLE payloads IN SHARE ROW EXCLUSIVE MODE

-- name: gc_runs_batch
-- Remove one batch of ended runs older than the cutoff, with their steps (no foreign
-- key: deleted here), step_attempts and events (cascade), and the payloads only they
-- referenced (with the chunk lists of manifests, by cascade) unless written within the
-- grace: a payload stored again for a new step is kept until that step names it.
-- Runs locked by someone else are skipped; live runs are never selected.
WITH doomed AS (
    SELECT run_id FROM runs
    WHERE status = ANY(%(statuses)b::text[]) AND status IN ('completed', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(seconds)s)
    ORDER BY finished_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), gone_steps AS (
    DELETE FROM steps s USING doomed d WHERE s.run_id = d.run_id
    RETURNING s.result_hash
), gone_runs AS (
    DELETE FROM runs r USING doomed d WHERE r.run_id = d.run_id
    RETURNING r.result_hash
), theirs AS (
    SELECT result_hash AS hash FROM gone_steps WHERE result_hash IS NOT NULL
    UNION
    SELECT result_hash FROM gone_runs WHERE result_hash IS NOT NULL
), gone_payloads AS (
    DELETE FROM payloads p USING theirs t
    WHERE p.hash = t.hash
      AND p.created_at < now() - make_interval(secs => greatest(%(seconds)s, %(grace)s))
      AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.result_hash = p.hash
                      AND s.run_id NOT IN (SELECT run_id FROM doomed))
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.result_hash = p.hash
                      AND r.run_id NOT IN (SELECT run_id FROM doomed))
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone_runs) AS runs,
       (SELECT count(*) FROM gone_steps) AS steps,
       (SELECT count(*) FROM gone_payloads) AS payloads

-- name: gc_orphan_payloads_batch
-- Remove one batch of payloads older than the cutoff (and the grace) that no step or
-- run references (left by reruns and restarts, or by a writer that died between
-- storing a large payload and committing its step).
WITH orphans AS (
    SELECT p.hash FROM payloads p
    WHERE p.created_at < now() - make_interval(secs => greatest(%(seconds)s, %(grace)s))
      AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.result_hash = p.hash)
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.result_hash = p.hash)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM payloads p USING orphans o WHERE p.hash = o.hash

-- name: gc_orphan_chunks_batch
-- Remove one batch of chunks that no manifest names and no writer used within the
-- cutoff (and the grace). A writer reusing a chunk marks it used and holds its row until
-- it commits: a held row is skipped, and one changed since this statement began is
-- rechecked on its new version (READ COMMITTED), whose recent use keeps it.
WITH orphans AS (
    SELECT c.hash FROM chunks c
    WHERE c.used_at < now() - make_interval(secs => greatest(%(seconds)s, %(grace)s))
      AND NOT EXISTS (SELECT 1 FROM payload_chunks pc WHERE pc.chunk = c.hash)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM chunks c USING orphans o WHERE c.hash = o.hash
