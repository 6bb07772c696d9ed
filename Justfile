# The seed's commands, each a thin call of `worldrt` (install: bash .ci/setup; then .venv/bin/just RECIPE).
# Set WORLDRT to use another binary; every recipe takes the options worldrt does through `args`.

worldrt := env_var_or_default("WORLDRT", "worldrt")

# List available providers (shows GF(3) balance)
providers-list *args:
    {{worldrt}} providers list {{args}}

# Check provider status
provider-status name *args:
    {{worldrt}} provider status {{name}} {{args}}

# Dynamic provider selection based on requirements: full, branch or inference
verse-select preset *args:
    {{worldrt}} verse select {{preset}} {{args}}

# Execute verse on a specific provider
verse-on-morph id *args:
    {{worldrt}} verse run {{id}} --on morph {{args}}

verse-on-modal id *args:
    {{worldrt}} verse run {{id}} --on modal {{args}}

verse-on-primeintellect id *args:
    {{worldrt}} verse run {{id}} --on primeintellect {{args}}

verse-on-gensyn id *args:
    {{worldrt}} verse run {{id}} --on gensyn {{args}}

verse-on-ritual id *args:
    {{worldrt}} verse run {{id}} --on ritual {{args}}

# Full pipeline across all providers (GF(3) = 0)
verse-pipeline id *args:
    {{worldrt}} verse pipeline {{id}} {{args}}

# Full orchestration: push_down → pipeline → pull_up (modes: optimal, robust, pessimistic)
verse-orchestrate id mode *args:
    {{worldrt}} verse orchestrate {{id}} {{mode}} {{args}}

# WEV extraction over time
wev-analytics *args:
    {{worldrt}} analytics wev {{args}}

# Cost per provider
provider-efficiency *args:
    {{worldrt}} analytics efficiency {{args}}

# Latency comparison
provider-benchmark *args:
    {{worldrt}} analytics benchmark {{args}}

# Check GF(3) conservation
gf3-audit *args:
    {{worldrt}} audit gf3 {{args}}
