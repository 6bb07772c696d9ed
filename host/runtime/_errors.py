"""What goes wrong with a component, each a one-line message a person can act on."""

from __future__ import annotations

from typing import Any

from worldrt.errors import Aborted, DeadlineExceeded, InvalidArgument


class ComponentError(InvalidArgument):
    """A component could not be built, loaded or linked, or its invocation failed."""


class InvocationError(ComponentError):
    """An invocation of a loaded component failed."""

    code = Aborted.code


class GuestError(InvocationError):
    """The component returned ``err(message)``; ``invocation`` has the run's timings (value: the message)."""

    def __init__(self, message: str, invocation: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.invocation = invocation


class ComponentTrap(InvocationError):
    """The component trapped; its store is gone, the host is fine."""


class ComponentTimeout(ComponentTrap):
    """The component ran past its deadline and was interrupted."""

    code = DeadlineExceeded.code
