-- Every query zart-nb runs, one named block each: "-- name: NAME" then a purpose line.
-- Loaded once by store/queries.py; run with search_path on zart's schema.

-- name: insert_run
-- Create a run the first time its id is executed; a no-op when it exists.
INSERT INTO runs (run_id, name, namespace, input, body, body_source, options, status)
VALUES (%(run_id)s, %(name)s, %(namespace)s, %(input)s, %(body)s, %(body_source)s, %(options)s,
        %(status)s)
ON CONFLICT (run_id) DO NOTHING

-- name: get_run
-- One run with its counts of steps in the current generation.
SELECT r.*,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation) AS steps_total,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation
           AND s.status = 'completed') AS steps_done,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation
           AND s.status = 'failed') AS steps_failed,
       r.lease_until < now() AS lease_expired
FROM runs r WHERE r.run_id = %(run_id)s

-- name: get_run_row
-- One run as stored, without the step counts (executing a body reads only this).
SELECT * FROM runs WHERE run_id = %(run_id)s

-- name: list_runs
-- Runs, newest first, optionally filtered by status and durable name.
SELECT r.run_id, r.name, r.status, r.generation, r.owner, r.created_at, r.started_at,
       r.finished_at, r.error,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation) AS steps_total,
       (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.generation = r.generation
           AND s.status = 'completed') AS steps_done
FROM runs r
WHERE (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(name)s::text IS NULL OR r.name = %(name)s)
ORDER BY r.created_at DESC, r.run_id
LIMIT %(limit)s

-- name: claim_run
-- Become the owner of a run whose owner is gone (none, expired lease, or known dead);
-- a completed run only when it is to be replayed (reopen).
UPDATE runs
SET owner = %(owner)s, owner_host = %(host)s, owner_pid = %(pid)s,
    lease_until = now() + make_interval(secs => %(lease)s),
    status = 'running', error = NULL, error_payload = NULL, finished_at = NULL,
    started_at = CASE WHEN status = 'pending' THEN now() ELSE started_at END,
    updated_at = now()
WHERE run_id = %(run_id)s
  AND (status NOT IN ('completed', 'cancelled') OR (%(reopen)s AND status = 'completed'))
  AND (owner IS NULL OR owner = %(owner)s OR lease_until < now() OR owner = %(dead_owner)s)
RETURNING generation, options

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
-- The body ended: store its result (as complete_step does) or error and give up ownership.
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

-- name: step_attempts
-- The attempt history of one step.
SELECT attempt, status, error, worker, started_at, finished_at
FROM step_attempts
WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
ORDER BY attempt

-- name: list_steps
-- The steps of one generation of a run, in execution order.
SELECT name, kind, status, seq, attempts, max_attempts, error, error_kind, traceback, worker,
       result_size, created_at, started_at, finished_at, not_before,
       result_hash IS NOT NULL AS out_of_line
FROM steps WHERE run_id = %(run_id)s AND generation = %(generation)s
ORDER BY seq NULLS LAST, created_at, name

-- name: get_step
-- One step's stored outcome.
SELECT name, kind, status, result, result_hash, error, error_kind, error_payload, traceback,
       attempts
FROM steps WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s

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
UPDATE chunks SET used_at = now() WHERE hash = ANY(%(hashes)s::bytea[]) RETURNING hash

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
SELECT %(hash)s, c FROM unnest(%(chunks)s::bytea[]) AS c
ON CONFLICT DO NOTHING

-- name: missing_chunks
-- The ones of these chunks the database does not have (checked before a manifest is read).
SELECT h AS hash FROM unnest(%(hashes)s::bytea[]) AS h
WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = h)

-- name: get_chunk
-- One chunk's stored bytes.
SELECT data FROM chunks WHERE hash = %(hash)s

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

-- name: forget_steps
-- Drop named steps of the current generation (kept in step_attempts) so that they run again.
WITH gone AS (
    DELETE FROM steps s USING runs r
    WHERE r.run_id = %(run_id)s AND s.run_id = r.run_id AND s.generation = r.generation
      AND s.name = ANY(%(names)s)
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

-- name: insert_event
-- Deliver an event; the first one for a (run, name) wins.
INSERT INTO events (run_id, name, payload) VALUES (%(run_id)s, %(name)s, %(payload)s)

-- name: get_event
-- An event's payload, if it was sent.
SELECT payload FROM events WHERE run_id = %(run_id)s AND name = %(name)s

-- name: set_durability
-- Commit durability of this session: 'on' waits for the WAL flush, 'off' does not.
SELECT set_config('synchronous_commit', %(value)s, false)

-- name: retry_child
-- Put a failed child back in the queue with one more attempt allowed.
UPDATE steps SET status = 'scheduled', not_before = NULL, max_attempts = attempts + 1,
       error = NULL, error_kind = NULL, error_payload = NULL, traceback = NULL,
       lease_until = NULL, worker = NULL, finished_at = NULL
WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
  AND status = 'failed'

-- name: insert_children
-- Queue a batch of children in one statement (arrays in binary); re-queues ones that
-- failed or changed. Only while this process owns the run.
INSERT INTO steps AS s (run_id, generation, name, kind, status, seq, namespace, code_fp, args_fp,
                        task, max_attempts, retry, timeout_s, attempts)
SELECT %(run_id)s, %(generation)s, c.name, 'child', 'scheduled', c.seq, %(namespace)s,
       c.code_fp, c.args_fp, c.task, c.max_attempts, c.retry::jsonb, c.timeout_s, 0
FROM unnest(%(names)s::text[], %(seqs)s::integer[], %(code_fps)s::bytea[], %(args_fps)s::bytea[],
            %(tasks)s::bytea[], %(max_attempts)s::integer[], %(retries)s::text[],
            %(timeouts)s::float8[])
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

-- name: children_outcomes
-- The finished children among the named ones (the body's wait).
SELECT name, status, attempts, result, result_hash, error, error_kind, error_payload
FROM steps
WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = ANY(%(names)s)
  AND status IN ('completed', 'failed')

-- name: claim_children
-- A worker takes up to `limit` ready children of runs that are not cancelled.
WITH ready AS (
    SELECT s.run_id, s.generation, s.name
    FROM steps s
    WHERE s.kind = 'child' AND s.status = 'scheduled' AND s.namespace = %(namespace)s
      AND (s.not_before IS NULL OR s.not_before <= now())
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id AND r.status = 'cancelled')
    ORDER BY s.not_before NULLS FIRST, s.created_at, s.seq
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE steps s
SET status = 'running', worker = %(worker)s, attempts = s.attempts + 1, started_at = now(),
    lease_until = now() + make_interval(secs => %(lease)s)
FROM ready
WHERE s.run_id = ready.run_id AND s.generation = ready.generation AND s.name = ready.name
RETURNING s.run_id, s.generation, s.name, s.task, s.attempts, s.max_attempts, s.retry, s.timeout_s

-- name: renew_child_leases
-- A worker's heartbeat over every child it holds.
UPDATE steps SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE kind = 'child' AND status = 'running' AND worker = %(worker)s

-- name: complete_children
-- Commit a batch of children's results at once (those over 16 KB into payloads, those in
-- chunks named by their manifest); a child is written only by the worker that still
-- holds it, so a committed result is written once.
WITH done AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(generations)s::integer[], %(names)s::text[],
                         %(results)s::bytea[], %(hashes)s::bytea[], %(sizes)s::bigint[])
        AS d(run_id, generation, name, result, result_hash, size)
), payload AS (
    INSERT INTO payloads (hash, data, size)
    SELECT p.hash, p.data, length(p.data)
    FROM unnest(%(payload_hashes)s::bytea[], %(payload_data)s::bytea[]) AS p(hash, data)
    ON CONFLICT (hash) DO NOTHING
)
UPDATE steps s
SET status = 'completed', result = done.result, result_hash = done.result_hash,
    result_size = done.size, finished_at = now(), lease_until = NULL
FROM done
WHERE s.run_id = done.run_id AND s.generation = done.generation AND s.name = done.name
  AND s.worker = %(worker)s AND s.status = 'running'
RETURNING s.name

-- name: fail_child
-- A child raised: back in the queue after `retry_at`, or failed for good when it is NULL.
WITH attempt AS (
    INSERT INTO step_attempts (run_id, generation, name, attempt, status, error, worker, started_at)
    SELECT %(run_id)s, %(generation)s, %(name)s, %(attempt)s, 'failed', %(error)s, %(worker)s,
           started_at
    FROM steps
    WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
    ON CONFLICT DO NOTHING
)
UPDATE steps
SET status = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN 'failed' ELSE 'scheduled' END,
    not_before = %(retry_at)s::timestamptz, error = %(error)s, error_kind = %(error_kind)s,
    error_payload = %(error_payload)s, traceback = %(traceback)s, worker = NULL,
    lease_until = NULL,
    finished_at = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN now() END
WHERE run_id = %(run_id)s AND generation = %(generation)s AND name = %(name)s
  AND worker = %(worker)s AND status = 'running'

-- name: release_children
-- A worker that stops gives back children it claimed but did not start (attempt undone).
UPDATE steps SET status = 'scheduled', worker = NULL, lease_until = NULL,
       attempts = greatest(attempts - 1, 0)
WHERE kind = 'child' AND status = 'running' AND worker = %(worker)s
  AND (run_id, generation, name) IN (
      SELECT * FROM unnest(%(run_ids)s::text[], %(generations)s::integer[], %(names)s::text[]))

-- name: requeue_expired_children
-- Children whose worker stopped renewing its lease go back to the queue, their attempt
-- counted; after two losses beyond their attempts they fail: the worker keeps dying.
WITH expired AS (
    SELECT run_id, generation, name FROM steps
    WHERE kind = 'child' AND status = 'running' AND lease_until < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE steps s
SET status = CASE WHEN s.attempts >= s.max_attempts + 2 THEN 'failed' ELSE 'scheduled' END,
    error = CASE WHEN s.attempts >= s.max_attempts + 2
                 THEN 'worker lost: its lease expired ' || s.attempts || ' times' END,
    error_kind = CASE WHEN s.attempts >= s.max_attempts + 2 THEN 'framework' END,
    finished_at = CASE WHEN s.attempts >= s.max_attempts + 2 THEN now() END,
    worker = NULL, lease_until = NULL
FROM expired
WHERE s.run_id = expired.run_id AND s.generation = expired.generation AND s.name = expired.name
RETURNING s.run_id, s.name, s.status

-- name: start_wait
-- A sleep or an event wait begins: its wake time or deadline is stored, so that a
-- restarted body waits only for the remainder.
INSERT INTO steps (run_id, generation, name, kind, status, seq, not_before, attempts, started_at)
SELECT %(run_id)s, %(generation)s, %(name)s, %(kind)s, 'running', %(seq)s,
       %(not_before)s::timestamptz, 1, now()
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s AND owner = %(owner)s
              AND status IN ('running', 'waiting'))
ON CONFLICT (run_id, generation, name) DO NOTHING

-- name: cli_run_attempts
-- The attempt history of every step of one generation of a run (zart-nb runs show).
SELECT name, attempt, status, error, worker, started_at, finished_at
FROM step_attempts
WHERE run_id = %(run_id)s AND generation = %(generation)s
ORDER BY name, attempt

-- name: gc_preview
-- What gc would remove: ended runs older than the cutoff, their steps, the payloads that
-- nothing else references (those of the doomed runs, and old orphans), and the chunks
-- that only those payloads name (or none, for long). Payloads and chunks younger than
-- the grace are kept: a payload being written is not named by its step yet.
WITH doomed AS (
    SELECT run_id FROM runs
    WHERE status = ANY(%(statuses)s::text[]) AND status IN ('completed', 'failed', 'cancelled')
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
    WHERE status = ANY(%(statuses)s::text[]) AND status IN ('completed', 'failed', 'cancelled')
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

-- name: detach_run
-- Hand a run to the worker fleet: it waits, pending, for a worker to execute its body.
UPDATE runs SET status = 'pending', body = %(body)s, input = %(input)s,
       options = options || '{"detach": true}'::jsonb, error = NULL, error_payload = NULL,
       finished_at = NULL, updated_at = now()
WHERE run_id = %(run_id)s AND status <> 'completed' AND (owner IS NULL OR lease_until < now())
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
RETURNING run_id, name, namespace, generation, body, input, options

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
  AND s.name = ANY(%(names)s)

-- name: progress_now
-- The database's clock: the widget measures "replayed" and elapsed time on it.
SELECT now() AS db_now

-- name: next_retry_in
-- Seconds until the earliest delayed child of a namespace is ready (NULL: none), so
-- that an idle worker wakes for a retry sooner than its slow poll.
SELECT extract(epoch FROM min(not_before) - now())::float8 AS seconds
FROM steps
WHERE kind = 'child' AND status = 'scheduled' AND namespace = %(namespace)s
  AND not_before > now()

-- name: run_status
-- The status of one run (a waiting body woken by a change of its run looks for a cancel).
SELECT status FROM runs WHERE run_id = %(run_id)s
