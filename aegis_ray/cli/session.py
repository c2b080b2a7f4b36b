"""What every command shares: the transport chosen by `--api`, the client it makes, and how a
failure becomes a message and an exit code.

Exit codes: 0 success; 1 the execution FAILED; 124 it TIMED_OUT; 130 it was CANCELLED;
2 bad input (invalid manifest, unschedulable, an ambiguous id prefix); 3 the cluster or one of
its services is unavailable; 4 not found (also an id that is no execution id); 5 not
authenticated; 75 you stopped waiting (Ctrl-C on `submit -f`, `wait`, `logs -f`, or `wait
--timeout` ran out): the execution keeps running.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from aegis_ray.cli.render import Output, err_console, plan_table
from aegis_ray.core.models.loading import (
    MAX_MANIFEST_BYTES,
    ManifestError,
    load_file,
    parse_document,
)
from aegis_ray.sdk.client import Client
from aegis_ray.sdk.contexts import ContextError
from aegis_ray.sdk.errors import ApiError, ApiUnreachable, MissingToken

EXIT_BY_STATE = {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": 124, "CANCELLED": 130}
EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_AUTH = 2, 3, 4, 5
# Distinct from every end state: the execution has not ended, you only stopped waiting for it
# (75 is EX_TEMPFAIL: "try again later").
EXIT_DETACHED = 75
# A call slower than this shows a spinner (on a terminal).
SPINNER_AFTER_S = 0.3
STDIN = Path("-")

OutputOpt = Annotated[
    Output,
    typer.Option(
        "--output", "-o", help="table (default), wide (every column, whole ids), json or yaml"
    ),
]
P = ParamSpec("P")
R = TypeVar("R")


class Api(StrEnum):
    rest = "rest"
    grpc = "grpc"


@dataclass
class Session:
    """The state of one `aegis` invocation (typer's context object)."""

    api: Api | None = None  # None: AEGIS_API, else the context's, else REST
    context: str | None = None  # a context of the client config file (sdk/contexts.py)
    timeout: float | None = None  # seconds per request
    ca_file: Path | None = None  # --ca-file: checks the API's TLS certificate
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """An API client over the chosen transport (same methods and results either way)."""
        if self._client is None:
            try:
                api = self.api.value if self.api else None
                self._client = Client.from_env(
                    api,
                    timeout=self.timeout,
                    context=self.context,
                    ca_file=str(self.ca_file) if self.ca_file else None,
                )
            except MissingToken as err:
                fail(str(err), EXIT_AUTH)
            except (ContextError, ValueError) as err:
                fail(str(err), EXIT_BAD_INPUT)
        return self._client

    def client_or_none(self) -> Client | None:
        """The client, or None where no token is known (status still reports what it can)."""
        try:
            return self.client() if self._client is None else self._client
        except typer.Exit as stop:
            if stop.exit_code == EXIT_AUTH:
                return None
            raise

    @property
    def transport(self) -> str:
        """Where calls go ("http://...", "gRPC host:port")."""
        return self.client().transport.target


def examples(*lines: str) -> str:
    """A command's help epilog: example command lines, one a line."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def session(ctx: typer.Context) -> Session:
    return ctx.ensure_object(Session)


def fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def call(fn: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
    """Run one API call, turning its failures into a message and a meaningful exit code; on a
    terminal, a spinner shows while a slow server answers."""
    spinner = err_console.status("waiting for the API", spinner="dots")
    timer = threading.Timer(SPINNER_AFTER_S, spinner.start)
    if err_console.is_terminal:
        timer.start()
    try:
        return fn(*args, **kw)
    except (ApiUnreachable, ApiError) as err:
        timer.cancel()
        spinner.stop()
        refused(err)
    finally:
        timer.cancel()
        spinner.stop()


def stream(items: Iterator[R]) -> Iterator[R]:
    """Items of a watch or a listing, its failures handled like `call`'s."""
    try:
        yield from items
    except (ApiUnreachable, ApiError) as err:
        refused(err)


def _where(err: ApiError) -> str:
    code = err.body.get("grpc_code")
    return f"gRPC {code}" if code else f"HTTP {err.status}"


def refused(err: ApiUnreachable | ApiError) -> NoReturn:
    """Print why a call failed and exit with the matching code."""
    if isinstance(err, ApiUnreachable):
        fail(f"{err}\nIs the cluster up? Try `aegis up` or `aegis status`.", EXIT_UNAVAILABLE)
    body = err.body
    if err.status == 422 and body.get("error") == "invalid_manifest":
        for p in body.get("problems", []):
            err_console.print(
                f"[red]invalid:[/] {body.get('source')}: {p['path'] or '(document)'}: "
                f"{p['message']} (got {p['value']!r})",
                highlight=False,
            )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if err.status == 422 and body.get("error") == "secret_not_found":
        for p in body.get("problems", []):
            err_console.print(
                f"[red]secret not found:[/] {p['path']}: {p['message']} ({p['value']})",
                highlight=False,
            )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if err.status == 422 and body.get("error") == "unschedulable":
        if "plan" in body:
            err_console.print(plan_table(body["plan"]))
        fail(f"rejected: {body['message']}", EXIT_BAD_INPUT)
    code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND, 503: EXIT_UNAVAILABLE}.get(
        err.status, EXIT_BAD_INPUT if err.status < 500 else EXIT_UNAVAILABLE
    )
    fail(f"{err} ({_where(err)})", code)


def read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if path == STDIN else path.read_text(encoding="utf-8")
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}", EXIT_BAD_INPUT)
    except UnicodeDecodeError as err:
        fail(f"{path}: not UTF-8 text (byte {err.start})", EXIT_BAD_INPUT)


def manifest_text(path: Path) -> tuple[str, str]:
    """A manifest's text and its name for messages; `-` reads standard input. Refuses, as the
    API would, a manifest over MAX_MANIFEST_BYTES."""
    text, source = read_text(path), "<stdin>" if path == STDIN else str(path)
    size = len(text.encode("utf-8", errors="surrogateescape"))
    if size > MAX_MANIFEST_BYTES:
        fail(
            f"{source}: manifest of {size} bytes; the API takes at most {MAX_MANIFEST_BYTES}",
            EXIT_BAD_INPUT,
        )
    return text, source


def load_or_exit(path: Path, text: str | None = None) -> Any:
    """Load and validate a manifest or NodeConfig (`text`: its content, already read from
    standard input); on failure print every problem and exit 2.

    Used before a manifest travels too: the server validates again with the same model.
    """
    try:
        if text is not None:
            return parse_document(text, source="<stdin>" if path == STDIN else str(path))
        return load_file(path)
    except ManifestError as err:
        for line in str(err).splitlines():
            err_console.print(f"[red]invalid:[/] {line}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}", EXIT_BAD_INPUT)


def redact(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of `aegis up`'s state fit to print: the database password masked."""
    out = dict(state)
    url = out.get("database_url") or ""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if sep and at and ":" in creds:
        out["database_url"] = f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return out
