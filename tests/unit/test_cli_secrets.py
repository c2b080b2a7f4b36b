"""`aegis secret put`'s KEY=VALUE sources, and manifests with secret references checked offline."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aegis_ray.cli.main import app
from aegis_ray.cli.secrets import PairError, parse_pairs

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_pairs_come_from_arguments_files_an_env_file_and_stdin(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("line one\nline two\n")
    env = tmp_path / "pairs.env"
    env.write_text("# comment\n\nfrom_env=a=b c\n")
    stdin = io.StringIO("from_stdin= spaced \n")
    data = parse_pairs(["plain=v=1", f"pem=@{key}", "-"], env, stdin)
    assert data == {
        "from_env": "a=b c",  # everything after the first '=', unquoted
        "plain": "v=1",
        "pem": "line one\nline two",  # the file's final line break is not part of the value
        "from_stdin": " spaced ",
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["novalue-s3cret"], "argument 1: not KEY=VALUE, KEY=@FILE or -"),
        (["=s3cret"], "argument 1: not KEY=VALUE"),
        (["k=s3cret", "k=other"], "argument 2: key 'k' is given twice"),
        (["k=@/nonexistent/file"], "cannot read /nonexistent/file"),
        ([], "no KEY=VALUE pairs given"),
    ],
)
def test_bad_pairs_name_the_argument_and_never_the_value(args: list[str], fragment: str) -> None:
    with pytest.raises(PairError) as err:
        parse_pairs(args, None, io.StringIO(""))
    assert fragment in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_bad_line_on_stdin_is_named_by_its_number() -> None:
    with pytest.raises(PairError, match="stdin, line 2: not KEY=VALUE"):
        parse_pairs(["-"], None, io.StringIO("a=1\nno-equals\n"))


def test_config_validate_checks_secret_references_offline(tmp_path: Path) -> None:
    text = (REPO / "examples" / "hello-agent.yaml").read_text()
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    plain = "    GREETING: hello\n"
    assert plain in text
    good.write_text(text.replace(plain, '    K: {secret: "openai#api_key"}\n'))
    bad.write_text(text.replace(plain, '    K: {secret: "openai"}\n'))
    assert runner.invoke(app, ["config", "validate", str(good)]).exit_code == 0
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: spec.env.K.secret: 'openai' is not a secret reference NAME#KEY" in " ".join(
        result.output.split()
    )


def test_a_bad_secret_name_is_refused_before_any_call(tmp_path: Path) -> None:
    home = {"AEGIS_HOME": str(tmp_path), "AEGIS_API_TOKEN": "t", "AEGIS_API_PORT": "1"}
    for command in (["put", "bad/name", "k=v"], ["get", "../x"], ["delete", "a#b"]):
        result = runner.invoke(app, ["secret", *command], env=home)
        assert result.exit_code == 2, (command, result.output)
        assert "secret name" in result.output and "not reachable" not in result.output
