"""Every table of the registry, in one place: the seed's three (column for column), where each local
engine runs, pipeline runs, and the multiverse ledger. Created (if missing) when the registry opens."""

# The seed's tables, then the providers' daemons.
PROVIDERS_AND_CALLS = """
CREATE TABLE IF NOT EXISTS runtime_providers (
    provider_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    trit INT CHECK (trit IN (-1, 0, 1)),
    capabilities JSON,
    api_endpoint VARCHAR,
    auth_method VARCHAR,
    status VARCHAR DEFAULT 'available',
    registered_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_invocations (
    invocation_id VARCHAR PRIMARY KEY,
    provider_id VARCHAR REFERENCES runtime_providers(provider_id),
    operation VARCHAR,
    verse_id VARCHAR,
    input_params JSON,
    output_result JSON,
    latency_ms FLOAT,
    cost_units FLOAT,
    invoked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_links (
    link_id VARCHAR PRIMARY KEY,
    source_component VARCHAR,
    target_provider VARCHAR REFERENCES runtime_providers(provider_id),
    link_config JSON,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS provider_daemons (
    provider_id VARCHAR PRIMARY KEY,
    address VARCHAR,
    pid INT,
    backend VARCHAR,
    restarts INT DEFAULT 0,
    last_error VARCHAR,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS invocations_by_verse ON provider_invocations (verse_id);
CREATE INDEX IF NOT EXISTS invocations_by_provider ON provider_invocations (provider_id, operation);
"""

# Each pipeline run with its providers and their trits (the GF(3) audit recomputes from these).
PIPELINE_RUNS = """
CREATE TABLE IF NOT EXISTS pipeline_runs (
    run_id VARCHAR PRIMARY KEY,
    verse_id VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    providers JSON NOT NULL,
    trits JSON NOT NULL,
    gf3_sum INT NOT NULL,
    balanced BOOLEAN NOT NULL,
    allow_unbalanced BOOLEAN NOT NULL DEFAULT false,
    baseline_value DOUBLE,
    winner_value DOUBLE,
    wev DOUBLE,
    cost_units DOUBLE NOT NULL DEFAULT 0,
    duration_ms DOUBLE,
    started_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    result JSON
);
"""

# The multiverse ledger: verses, partitions, balances and every move.
MULTIVERSE = """
CREATE TABLE IF NOT EXISTS mv_multiverses (
    name VARCHAR PRIMARY KEY,
    root_key VARCHAR NOT NULL,
    observed VARCHAR,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    resolved_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS mv_verses (
    verse_key VARCHAR PRIMARY KEY,
    multiverse VARCHAR NOT NULL,
    parent VARCHAR,
    outcomes JSON NOT NULL,
    alive BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS mv_partitions (
    partition_key VARCHAR PRIMARY KEY,
    multiverse VARCHAR NOT NULL,
    parent VARCHAR NOT NULL,
    children JSON NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS mv_balances (
    verse_key VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    amount DOUBLE NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (verse_key, owner)
);
CREATE SEQUENCE IF NOT EXISTS mv_move_ids;
CREATE TABLE IF NOT EXISTS mv_moves (
    move_id BIGINT PRIMARY KEY DEFAULT nextval('mv_move_ids'),
    multiverse VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    owner VARCHAR,
    verse_key VARCHAR,
    partition_key VARCHAR,
    amount DOUBLE,
    outcome VARCHAR,
    moved_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
"""

# Columns added after the first release, so that a registry file made before them gains them when opened.
ADDED_COLUMNS = """
-- Of latency_ms, the part the call waited for its provider's daemon to start (0 when it was running).
ALTER TABLE provider_invocations ADD COLUMN IF NOT EXISTS startup_ms FLOAT DEFAULT 0;
-- The lattice host that recorded the row or run (NULL for the host's own rows on one machine).
ALTER TABLE provider_invocations ADD COLUMN IF NOT EXISTS host_id VARCHAR;
ALTER TABLE pipeline_runs ADD COLUMN IF NOT EXISTS host_id VARCHAR;
-- The lattice replica that answered the call (NULL when the host's own daemon did).
ALTER TABLE provider_invocations ADD COLUMN IF NOT EXISTS replica VARCHAR;
"""

SCHEMA = PROVIDERS_AND_CALLS + PIPELINE_RUNS + MULTIVERSE + ADDED_COLUMNS

# The seed's three rows, verbatim, then the two providers the seed's registry describes but did not insert.
SEED_PROVIDERS = """
INSERT INTO runtime_providers VALUES
('morph', 'Morph Labs Infinibranch', 1,
 '{"snapshot": true, "branch": true, "languages": ["python", "js", "rust", "cpp"]}',
 'https://api.cloud.morph.so/v1', 'bearer', 'available', NOW()),
('primeintellect', 'PrimeIntellect Distributed RL', 0,
 '{"training": true, "rl": true, "max_params": "100B+", "async": true}',
 'https://api.primeintellect.ai/v1', 'bearer', 'available', NOW()),
('gensyn', 'Gensyn Decentralized ML', -1,
 '{"verification": true, "trustless": true, "protocol": "ethereum_rollup"}',
 'https://api.gensyn.ai/v1', 'bearer', 'available', NOW())
ON CONFLICT DO NOTHING;
INSERT INTO runtime_providers VALUES
('modal', 'Modal Labs Sandboxes', 1,
 '{"sandbox": true, "cold_start": "<1s", "languages": ["python", "any container"]}',
 'https://api.modal.com', 'bearer', 'available', NOW()),
('ritual', 'Ritual Infernet', -1,
 '{"inference": true, "verification": "attested re-execution", "endpoint": "self-hosted Infernet node"}',
 NULL, 'bearer', 'available', NOW())
ON CONFLICT DO NOTHING;
"""
