"""The code interpreter (``e2b_code_interpreter``) on the instance's own Python interpreter: ``POST
/execute`` answers E2B's NDJSON (stdout and stderr as they come, the result, an error, the execution
count), and contexts are namespaces in that interpreter (create, list, restart, remove).

Each cell runs in the interpreter through ``cell`` (Execute, language python): the helper it defines once
runs the code in its context's namespace, evaluates a last expression, and answers its formats (``text``
its repr, and whatever ``_repr_html_``/``_repr_png_``/``_repr_markdown_``/``_repr_svg_``/``_repr_jpeg_``/
``_repr_pdf_``/``_repr_latex_``/``_repr_json_``/``_repr_javascript_`` the value offers, as the SDK's
``Result`` with ``is_main_result``), each value given to ``display(...)`` (a name of every context, as in
IPython) as a result of its own, open matplotlib figures as PNG results (where matplotlib exists), or the
error's name, value and traceback as the cell's value. So the state lives in the instance's
memory: it is kept between cells and carried by a fork or a pause. Only Python runs: other languages are
refused with a sentence. The default image has no matplotlib (nor PIL, pandas, …): importing one of those
answers ModuleNotFoundError with a sentence saying library-made rich results are not supported here, while a
value's own ``_repr_*_`` formats still come back.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from worldrt.errors import InvalidArgument, NotFound, WorldError
from worldrt.host.api import Admission
from worldrt.host.api.e2b._paths import HOME
from worldrt.host.api.e2b._sandboxes import E2bApi
from worldrt.v1 import pb

DEFAULT_CONTEXT = "default"
RUN_TIMEOUT_MS = 300_000
_LANGUAGES = ("python", "", None)

_HELPER = r'''
def __worldrt_e2b_run(context, code, env):
    import ast, base64, json, os, sys, traceback
    spaces = globals().setdefault("__worldrt_e2b_contexts", {})
    counts = globals().setdefault("__worldrt_e2b_counts", {})
    space = spaces.setdefault(context, {"__name__": "__main__", "__builtins__": __builtins__})
    counts[context] = counts.get(context, 0) + 1
    out = {"count": counts[context], "result": None, "error": None, "displays": []}

    def formats(value):
        found = {"text": repr(value)}
        for name, key in (("_repr_html_", "html"), ("_repr_markdown_", "markdown"), ("_repr_svg_", "svg"),
                          ("_repr_png_", "png"), ("_repr_jpeg_", "jpeg"), ("_repr_pdf_", "pdf"),
                          ("_repr_latex_", "latex"), ("_repr_json_", "json"), ("_repr_javascript_", "javascript")):
            method = getattr(value, name, None)
            if callable(method):
                try:
                    made = method()
                except Exception:
                    continue
                if isinstance(made, tuple) and len(made) == 2:
                    made = made[0]  # IPython's (data, metadata) form
                if isinstance(made, (bytes, bytearray)):
                    made = base64.b64encode(made).decode()
                if key == "json":
                    try:
                        json.dumps(made)
                    except (TypeError, ValueError):
                        continue  # not JSON after all: the cell's answer must stay JSON
                if made is not None:
                    found[key] = made
        return found

    def display(*values, **_options):
        """As IPython's display(): each value's formats, a result of its own (not the cell's main one)."""
        for value in values:
            out["displays"].append(formats(value))

    space["display"] = display
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), space)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), space)
            if value is not None:
                out["result"] = formats(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        value = str(exc)
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").partition(".")[0] in NOT_IN_IMAGE:
            value += NOT_IN_IMAGE_NOTE
        out["error"] = {"name": type(exc).__name__, "value": value,
                        "traceback": "".join(traceback.format_exception(exc))}
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        import io
        for number in plt.get_fignums():
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png")
            out["displays"].append({"text": repr(plt.figure(number)),
                                    "png": base64.b64encode(buffer.getvalue()).decode()})
        plt.close("all")
    return out
'''


# Libraries E2B's code-interpreter template has for rich results that worldrt's default image (Python's
# standard library and numpy) does not: importing one answers ModuleNotFoundError with this note added.
NOT_IN_IMAGE = ("matplotlib", "PIL", "pandas", "seaborn", "plotly", "bokeh", "IPython", "scipy", "sklearn")
NOT_IN_IMAGE_NOTE = (": worldrt's default image has Python's standard library and numpy only, so matplotlib charts "
                     "and other library-made rich results (figures as PNG, DataFrames as HTML) are not supported here; "
                     "a value's own _repr_png_/_repr_html_/_repr_svg_/... still comes back as a rich result")

_SOURCE = _HELPER.replace("NOT_IN_IMAGE_NOTE", repr(NOT_IN_IMAGE_NOTE)).replace("NOT_IN_IMAGE", repr(NOT_IN_IMAGE))


def cell(context: str, code: str, env: dict[str, str]) -> str:
    """The code Execute runs for one cell: the helper defined once, then called (its value is the cell's)."""
    return (f"if '__worldrt_e2b_run' not in globals():\n    exec({_SOURCE!r})\n"
            f"__worldrt_e2b_run({context!r}, {code!r}, {env!r})")


def _restart(context: str) -> str:
    return (f"globals().setdefault('__worldrt_e2b_contexts', {{}}).pop({context!r}, None)\n"
            f"globals().setdefault('__worldrt_e2b_counts', {{}}).pop({context!r}, None)")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item) + "\n"


class Contexts:
    """Each sandbox's contexts (id -> cwd); the default one always exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_sandbox: dict[str, dict[str, str]] = {}

    def of(self, sandbox_id: str) -> dict[str, str]:
        with self._lock:
            return self._by_sandbox.setdefault(sandbox_id, {DEFAULT_CONTEXT: HOME})

    def add(self, sandbox_id: str, cwd: str) -> str:
        context = secrets.token_hex(8)
        self.of(sandbox_id)[context] = cwd
        return context

    def known(self, sandbox_id: str, context: str) -> None:
        if context not in self.of(sandbox_id):
            raise NotFound(f"context {context} not found in sandbox {sandbox_id}")


class Interpreter:
    def __init__(self, api: E2bApi, admission: Admission) -> None:
        self.api, self.admission = api, admission
        self.contexts = Contexts()

    @staticmethod
    def _language(language: str | None) -> None:
        if language not in _LANGUAGES:
            raise InvalidArgument(f"language {language!r} is not supported here: worldrt's code interpreter runs "
                                  f"Python in the instance's interpreter (use commands.run for other programs)")

    def create_context(self, sandbox_id: str, language: str | None, cwd: str | None) -> dict[str, Any]:
        self.api.running(sandbox_id)
        self._language(language)
        context = self.contexts.add(sandbox_id, cwd or HOME)
        return {"id": context, "language": "python", "cwd": cwd or HOME}

    def list_contexts(self, sandbox_id: str) -> list[dict[str, Any]]:
        self.api.running(sandbox_id)
        return [{"id": c, "language": "python", "cwd": cwd} for c, cwd in self.contexts.of(sandbox_id).items()]

    def restart_context(self, sandbox_id: str, context: str) -> None:
        self.contexts.known(sandbox_id, context)
        self.api.run_python(sandbox_id, _restart(context), lambda _event: None, RUN_TIMEOUT_MS)

    def remove_context(self, sandbox_id: str, context: str) -> None:
        self.contexts.known(sandbox_id, context)
        if context == DEFAULT_CONTEXT:
            raise InvalidArgument("the default context cannot be removed (restart it instead)")
        self.api.run_python(sandbox_id, _restart(context), lambda _event: None, RUN_TIMEOUT_MS)
        self.contexts.of(sandbox_id).pop(context, None)

    async def execute(self, sandbox_id: str, code: str, context: str | None, language: str | None,
                      env: dict[str, str]) -> AsyncIterator[str]:
        """The cell's NDJSON lines once it has started; an error before that is raised (an HTTP status)."""
        self._language(language)
        context = context or DEFAULT_CONTEXT
        self.contexts.known(sandbox_id, context)
        self.api.running(sandbox_id)
        release = await self.admission.acquire(sandbox_id)
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[pb.ExecutionEvent | pb.ExecutionResult | BaseException] = asyncio.Queue()

        def put(item: pb.ExecutionEvent | pb.ExecutionResult | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: the server has stopped and nobody reads the stream

        def run() -> None:
            try:
                put(self.api.run_python(sandbox_id, cell(context, code, env), put, RUN_TIMEOUT_MS))
            except BaseException as exc:  # noqa: BLE001 - handed to the stream's reader
                put(exc)
            finally:
                Admission.release_from_thread(loop, release)

        try:
            threading.Thread(target=run, name=f"e2b-execute-{sandbox_id}", daemon=True).start()
        except BaseException:
            release()
            raise
        return self._lines(items)

    @staticmethod
    async def _lines(items: asyncio.Queue[pb.ExecutionEvent | pb.ExecutionResult | BaseException]
                     ) -> AsyncIterator[str]:
        while True:
            item = await items.get()
            if isinstance(item, BaseException):
                message = item.message if isinstance(item, WorldError) else repr(item)
                yield _line({"type": "error", "name": "WorldrtError", "value": message, "traceback": message})
                return
            if isinstance(item, pb.ExecutionEvent):
                kind = item.WhichOneof("event")
                if kind in ("stdout", "stderr"):
                    yield _line({"type": kind, "text": getattr(item, kind), "timestamp": _now()})
                continue
            for line in _outcome(item):
                yield line
            return


def _outcome(result: pb.ExecutionResult) -> list[str]:
    """The result, error and execution count lines of a finished cell."""
    try:
        value = json.loads(result.value_json) if result.value_json else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or "count" not in value:
        why = result.error or f"the interpreter ended the cell with exit code {result.exit_code}"
        return [_line({"type": "error", "name": why.partition(":")[0] or "Error", "value": why, "traceback": why})]
    lines = [_line({"type": "result", **shown, "is_main_result": False, "extra": {}})
             for shown in value.get("displays") or []]
    if value.get("result") is not None:
        lines.append(_line({"type": "result", **value["result"], "is_main_result": True, "extra": {}}))
    if value.get("error") is not None:
        lines.append(_line({"type": "error", **value["error"]}))
    lines.append(_line({"type": "number_of_executions", "execution_count": value["count"]}))
    return lines


__all__ = ["Interpreter", "cell"]
