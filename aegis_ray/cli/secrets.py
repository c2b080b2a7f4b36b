"""`aegis secret put | list | get | delete`: the caller's tenant's secrets in OpenBao.

Values go in and never come back out. A value given on the command line (KEY=VALUE) is seen by
anyone who can list this machine's processes, and stays in the shell's history: prefer
KEY=@file, `--from-file FILE`, or `-` (KEY=VALUE lines on stdin).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from aegis_ray.cli.render import Column, Output, age, console, emit, show, table
from aegis_ray.cli.session import EXIT_BAD_INPUT, OutputOpt, call, examples, fail, session
from aegis_ray.core.secrets import check_name

app = typer.Typer(help="Secrets of your tenant (values are write-only).", no_args_is_help=True)

PAIRS_HELP = (
    "KEY=VALUE, KEY=@FILE (the file's content, without its final line break), or - for "
    "KEY=VALUE lines on stdin"
)


class PairError(ValueError):
    """A KEY=VALUE argument or line that cannot be used; never holds the value."""


def _one_line_end(text: str) -> str:
    return text.removesuffix("\n").removesuffix("\r")


def pairs_from_lines(lines: list[str], where: str) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped), as in an env file, unquoted."""
    out: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = _one_line_end(raw)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PairError(f"{where}, line {number}: not KEY=VALUE")
        out[key.strip()] = value
    return out


def parse_pairs(args: list[str], from_file: Path | None, stdin: TextIO) -> dict[str, str]:
    """The KEY -> VALUE pairs of `aegis secret put`'s arguments, in the order given."""
    data: dict[str, str] = {}

    def add(found: dict[str, str], where: str) -> None:
        for key in found:
            if key in data:
                raise PairError(f"{where}: key {key!r} is given twice")
        data.update(found)

    if from_file is not None:
        add(pairs_from_lines(_read(from_file).splitlines(True), str(from_file)), str(from_file))
    for index, arg in enumerate(args, 1):
        if arg == "-":
            add(pairs_from_lines(stdin.readlines(), "stdin"), "stdin")
            continue
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise PairError(f"argument {index}: not KEY=VALUE, KEY=@FILE or -")
        if value.startswith("@"):
            value = _one_line_end(_read(Path(value[1:])))
        add({key: value}, f"argument {index}")
    if not data:
        raise PairError("no KEY=VALUE pairs given (" + PAIRS_HELP + ")")
    return data


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise PairError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise PairError(f"{path} is not UTF-8 text") from None


def _name(name: str) -> str:
    """The secret name, checked here: a '/' in it would change the URL it is sent to."""
    try:
        return check_name(name)
    except ValueError as err:
        fail(str(err), EXIT_BAD_INPUT)


SECRET_COLUMNS = (
    Column("NAME"), Column("VERSION"), Column("UPDATED"), Column("KEYS", flexible=True)
)


def secrets_table(items: list[dict[str, object]], output: Output = Output.table) -> Table:
    rows = []
    for s in items:
        keys = s.get("keys") or []
        rows.append([
            escape(str(s["name"])),
            str(s.get("version", "")),
            age(str(s.get("updated_at") or "")),
            escape(", ".join(str(k) for k in keys) if isinstance(keys, list) else ""),
        ])
    return table(SECRET_COLUMNS, rows, output)


@app.command(
    "put",
    epilog=examples(
        "aegis secret put openai api_key=@key.txt",
        "printf 'api_key=sk-...\\n' | aegis secret put openai -",
        "aegis secret put openai --from-file openai.env",
    ),
)
def put(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the secret's name, e.g. openai")],
    pairs: Annotated[list[str] | None, typer.Argument(help=PAIRS_HELP)] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="a file of KEY=VALUE lines")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Write a secret: a new version holding exactly these keys (the old keys are replaced)."""
    name = _name(name)
    try:
        data = parse_pairs(pairs or [], from_file, sys.stdin)
    except PairError as err:
        fail(str(err), EXIT_BAD_INPUT)
    meta = call(session(ctx).client().put_secret, name, data).to_json()
    if not emit(meta, output):
        console.print(
            f"secret [bold]{meta['name']}[/] version {meta['version']}: "
            + ", ".join(meta["keys"]),
            highlight=False,
        )


@app.command("list", epilog=examples("aegis secret list", "aegis secret list -o json"))
def list_(ctx: typer.Context, output: OutputOpt = Output.table) -> None:
    """Your tenant's secrets: names, keys and versions, never values."""
    items = [s.to_json() for s in call(session(ctx).client().secrets).items]
    if not emit(items, output):
        show(secrets_table(items, output))


@app.command("get", epilog=examples("aegis secret get openai"))
def get(ctx: typer.Context, name: str, output: OutputOpt = Output.table) -> None:
    """One secret's names of keys and version (its values are never shown)."""
    meta = call(session(ctx).client().secret, _name(name)).to_json()
    if not emit(meta, output):
        show(secrets_table([meta], output))


@app.command("delete", epilog=examples("aegis secret delete openai"))
def delete(ctx: typer.Context, name: str, output: OutputOpt = Output.table) -> None:
    """Delete a secret with every version; executions referring to it fail to launch."""
    res = call(session(ctx).client().delete_secret, _name(name)).to_json()
    if not emit(res, output):
        console.print(f"deleted secret [bold]{res['name']}[/]", highlight=False)
