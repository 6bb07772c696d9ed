"""The verse domain: provider selection, the pipeline and one provider's role alone, pipeline runs and
their GF(3) audit, the multiverse ledger and its orchestration modes, analytics and their plots, and the
provider benchmark."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names
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

if TYPE_CHECKING:
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

# Selection is loaded with the package: the CLI reads a preset's providers before an embedded host loads
# DuckDB and wasmtime, which the rest needs.
_LAZY = {
    **dict.fromkeys(["VerseRunner", "VerseHost", "PipelineError", "example_component", "example_path",
                     "MAX_BRANCHES", "pipeline_config"], "_pipeline"),
    **dict.fromkeys(["record_run", "runs", "audit", "registry_trits", "Gf3Error"], "_runs"),
    **dict.fromkeys(["Multiverse", "MultiverseError", "Verse", "Partition", "pick", "ORCHESTRATE_MODES"], "_multiverse"),
    **dict.fromkeys(["wev_over_time", "efficiency", "wev_per_cost", "plot_wev", "wev_figure", "plot_efficiency",
                     "AnalyticsError"], "_analytics"),
    "run_benchmark": "_benchmark",
}


__getattr__ = lazy_names(__name__, _LAZY)


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
