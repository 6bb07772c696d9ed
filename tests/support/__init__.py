"""What the tests share: waiting with a bound, the processes a test started, real hosts and daemons, and
the components they run."""

from tests.support.calls import run, status_of
from tests.support.components import CACHE, EXAMPLES, FIXTURES, ROOT, built_example, fixture_component
from tests.support.hosts import HostProcess, cli, host_channel
from tests.support.processes import alive, processes_under, sigterm_mid_call_leaves_nothing, wait_for, wait_gone
from tests.support.sandboxes import live_sandboxes, member_pids, settle_sandboxes

__all__ = [
    "run", "status_of",
    "CACHE", "EXAMPLES", "FIXTURES", "ROOT", "built_example", "fixture_component",
    "HostProcess", "cli", "host_channel",
    "alive", "processes_under", "sigterm_mid_call_leaves_nothing", "wait_for", "wait_gone",
    "live_sandboxes", "member_pids", "settle_sandboxes",
]
