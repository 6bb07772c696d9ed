"""What the tests (and bench/attacks.py) share: waiting with a bound, the processes a test started, real
hosts and daemons, the components they run, registry rows read back, and hostile code."""

from tests.support.api_servers import read_head
from tests.support.attacks import KILL_EVERYTHING, SYSCALLS
from tests.support.calls import run, status_of
from tests.support.components import CACHE, EXAMPLES, FIXTURES, ROOT, built_example, fixture_component
from tests.support.hosts import HostProcess, cli, host_channel, module_daemon
from tests.support.messages import sample_message
from tests.support.modal_api import ModalApiServer
from tests.support.morph_api import MorphApiServer, free_port
from tests.support.processes import (
    alive,
    cmdlines,
    environ_token,
    open_fds,
    processes_under,
    rss_mib,
    settle,
    sigterm_mid_call_leaves_nothing,
    steady,
    wait_for,
    wait_gone,
)
from tests.support.rows import f32, invocation_rows, missing_rows
from tests.support.sandboxes import live_sandboxes, member_pids, settle_sandboxes

__all__ = [
    "KILL_EVERYTHING", "SYSCALLS",
    "run", "status_of",
    "CACHE", "EXAMPLES", "FIXTURES", "ROOT", "built_example", "fixture_component",
    "HostProcess", "cli", "host_channel", "module_daemon",
    "MorphApiServer", "ModalApiServer", "free_port", "read_head",
    "sample_message",
    "alive", "cmdlines", "environ_token", "open_fds", "processes_under", "rss_mib", "settle", "steady",
    "sigterm_mid_call_leaves_nothing", "wait_for", "wait_gone",
    "f32", "invocation_rows", "missing_rows",
    "live_sandboxes", "member_pids", "settle_sandboxes",
]
