"""What every command shares: the transport chosen by `--api`, the client it makes, and how a
failure becomes a message and an exit code.

Exit codes: 0 success; 1 the execution FAILED; 124 it TIMED_OUT; 130 it was CANCELLED;
2 bad input (invalid manifest, unschedulable); 3 the cluster or one of its services is
unavailable; 4 not found (also an id that is no execution id); 5 not authenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from aegis_ray.cli.render import Output, err_console, plan_table
from aegis_ray.core.models.loading import ManifestError, load_file
from aegis_ray.sdk.client import Client
from aegis_ray.sdk.errors import ApiError, ApiUnreachable, MissingToken

EXIT_BY_STATE = {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": 124, "CANCELLED": 130}
EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_AUTH = 2, 3, 4, 5

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table (default), json or yaml")]
P = ParamSpec("P")
R = TypeVar("R")


class Api(StrEnum):
    rest = "rest"
    grpc = "grpc"


@dataclass
class Session:
    """The state of one `aegis` invocation (typer's context object)."""

    api: Api = Api.rest
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """An API client over the chosen transport (same methods and results either way)."""
        if self._client is None:
            try:
                self._client = Client.from_env(self.api.value)
            except MissingToken as err:
                fail(str(err), EXIT_AUTH)
        return self._client


def session(ctx: typer.Context) -> Session:
    return ctx.ensure_object(Session)


def fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def call(fn: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
    """Run one API call, turning its failures into a message and a meaningful exit code."""
    try:
        return fn(*args, **kw)
    except (ApiUnreachable, ApiError) as err:
        refused(err)


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
        return path.read_text()
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}", EXIT_BAD_INPUT)


def load_or_exit(path: Path) -> Any:
    """Load and validate a manifest or NodeConfig; on failure print every problem and exit 2.

    Used before a manifest travels too: the server validates again with the same model.
    """
    try:
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
