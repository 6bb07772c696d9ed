"""What goes wrong with a component, each a one-line message a person can act on.

Each class is of the kind its status names: a component that cannot be built, loaded or linked is
InvalidArgument; a failed invocation is Aborted (the guest returned err, or trapped), or DeadlineExceeded
when it ran past its deadline. ``ComponentFault`` is the family of them all and ``InvocationError`` the
family of failed invocations (families are not kinds: ``except InvocationError`` catches every failed
invocation, ``except DeadlineExceeded`` every timeout).
"""

from __future__ import annotations

from typing import Any

from worldrt.errors import Aborted, DeadlineExceeded, ErrorFamily, InvalidArgument


class ComponentFault(ErrorFamily):
    """Anything that went wrong with a component: a ComponentError or an InvocationError."""


class ComponentError(ComponentFault, InvalidArgument):
    """A component could not be built, loaded or linked (or does not fit the world)."""


class InvocationError(ComponentFault):
    """An invocation of a loaded component failed: GuestError, ComponentTrap or ComponentTimeout."""


class GuestError(InvocationError, Aborted):
    """The component returned ``err(message)``; ``invocation`` has the run's timings (value: the message)."""

    def __init__(self, message: str, invocation: Any = None) -> None:
        super().__init__(message)
        self.invocation = invocation


class ComponentTrap(InvocationError, Aborted):
    """The component trapped; its store is gone, the host is fine."""


class ComponentTimeout(InvocationError, DeadlineExceeded):
    """The component ran past its deadline and was interrupted (its store is gone, as after a trap)."""
