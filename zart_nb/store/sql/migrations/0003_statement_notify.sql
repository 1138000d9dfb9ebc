-- zart-nb schema, version 3: children's wake-ups are sent by the statements that change
-- them, once per payload, instead of by a row trigger on steps.
--
-- steps_notify ran notify_step_v1 once per child row inserted or whose status was set:
-- 6.4 ms per 1,000 children scheduled (14.3 ms against 7.9 ms without it), as much again
-- for their claims and for their completions, about a tenth of a 5,000-child fan-out;
-- and every sequential step's INSERT paid its WHEN check. Each query of queries.sql that
-- inserts children or changes their status now calls notify_children_v1 (below) itself,
-- once per distinct payload: channel zart_work (payload: namespace) when children become
-- 'scheduled', channel zart_run (payload: run_id) for any of them. PostgreSQL delivers them at commit,
-- as it did the trigger's. The triggers on runs and events stay: their rows change once
-- per run or event, not once per child.
--
-- A zart-nb older than this refuses a database at version 3 when it opens it (schema.py:
-- "newer than this zart-nb knows"), so no process started afterwards changes children
-- without waking anyone.

DROP TRIGGER steps_notify ON steps;
DROP FUNCTION notify_step_v1();

-- The wake-ups of one statement: zart_run once per distinct run, zart_work once per
-- distinct namespace (NULL arrays: none); the number sent.
CREATE FUNCTION notify_children_v1(run_ids text[], namespaces text[]) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(pg_notify(channel, payload))
    FROM (SELECT 'zart_run', r FROM unnest(run_ids) AS r
          UNION SELECT 'zart_work', n FROM unnest(namespaces) AS n) AS p(channel, payload)
$$;
