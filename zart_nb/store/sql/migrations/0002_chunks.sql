-- zart-nb schema, version 2: large payloads as chunks and a manifest.
--
-- A payload that pickles to more than a few MiB is stored as content-addressed chunks
-- (SHA-256 of the stored bytes: zstd-compressed where that pays, else raw) and a signed
-- manifest that lists them in order. The manifest is a payload like any other (in
-- payloads, addressed by its hash, named by steps.result_hash and runs.result_hash);
-- payload_chunks records which chunks each manifest names, so that gc removes the
-- chunks no manifest needs. A chunk is stored once, whatever number of payloads name it.

CREATE TABLE chunks (
    hash    bytea PRIMARY KEY,
    data    bytea NOT NULL,
    -- when a payload being written last wrote or reused it: gc keeps chunks used lately,
    -- so that a payload written but not yet named by its step keeps its chunks
    used_at timestamptz NOT NULL DEFAULT now()
);
-- Compressed by zstd already, or incompressible: out of line without pglz's attempt
-- (docs/performance.md compares EXTERNAL with MAIN).
ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE payload_chunks (
    payload bytea NOT NULL REFERENCES payloads (hash) ON DELETE CASCADE,
    chunk   bytea NOT NULL,
    PRIMARY KEY (payload, chunk)
);
CREATE INDEX payload_chunks_chunk ON payload_chunks (chunk);
