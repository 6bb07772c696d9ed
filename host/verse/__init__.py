"""The verse domain: provider selection, the pipeline and one provider's role alone, pipeline runs and
their GF(3) audit, the multiverse ledger and its orchestration modes, analytics and their plots, and the
provider benchmark."""

from worldrt.host.verse._analytics import (
                                           AnalyticsError,
                                           efficiency,
                                           plot_efficiency,
                                           plot_wev,
                                           wev_figure,
                                           wev_over_time,
                                           wev_per_cost,
)
from worldrt.host.verse._benchmark import run_benchmark
from worldrt.host.verse._multiverse import (
                                           ORCHESTRATE_MODES,
                                           Multiverse,
                                           MultiverseError,
                                           Partition,
                                           Verse,
                                           pick,
)
from worldrt.host.verse._pipeline import (
                                           MAX_BRANCHES,
                                           PipelineError,
                                           VerseHost,
                                           VerseRunner,
                                           example_component,
                                           example_path,
                                           pipeline_config,
)
from worldrt.host.verse._runs import Gf3Error, audit, record_run, registry_trits, runs
from worldrt.host.verse._selection import (
                                           PRESETS,
                                           ROLES,
                                           VERIFY_MODES,
                                           Choice,
                                           Role,
                                           Selection,
                                           SelectionError,
                                           abilities,
                                           balanced,
                                           candidates,
                                           choose,
                                           gf3_sum,
                                           preset,
                                           select_provider,
)

__all__ = [
    "VerseRunner", "VerseHost", "PipelineError", "example_component", "example_path", "MAX_BRANCHES",
    "pipeline_config",
    "select_provider", "preset", "PRESETS", "ROLES", "VERIFY_MODES", "Role", "Choice", "choose", "candidates",
    "abilities", "Selection", "SelectionError", "gf3_sum", "balanced",
    "record_run", "runs", "audit", "registry_trits", "Gf3Error",
    "Multiverse", "MultiverseError", "Verse", "Partition", "pick", "ORCHESTRATE_MODES",
    "wev_over_time", "efficiency", "wev_per_cost", "plot_wev", "wev_figure", "plot_efficiency", "AnalyticsError",
    "run_benchmark",
]
