"""Secret names, references, tenant paths and redaction: pure logic, no OpenBao."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from aegis_ray.adapters.docker.logs import LineAssembler
from aegis_ray.core.redaction import MIN_CHARS, Redactor
from aegis_ray.core.secrets import (
    SecretRef,
    check_secret_data,
    secret_path,
    tenant_prefix,
    tenant_segment,
)


def test_a_reference_is_name_hash_key() -> None:
    ref = SecretRef.parse("openai#api_key")
    assert (ref.name, ref.key, str(ref)) == ("openai", "api_key", "openai#api_key")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("openai", "is not a secret reference NAME#KEY"),
        ("#key", "secret name ''"),
        ("openai#", "secret key ''"),
        ("a/b#k", "secret name 'a/b'"),
        ("a#k#j", "secret key 'k#j'"),
        ("-a#k", "starting with a letter or digit"),
    ],
)
def test_a_bad_reference_says_which_part_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        SecretRef.parse(text)
    assert fragment in str(err.value)


def test_tenant_paths_are_one_segment_and_never_reach_another_tenant() -> None:
    assert secret_path("default", "openai") == "aegis/tenants/default/openai"
    tricky = ["../default", "a/b", "a/../b", ".", "..", "~x", "x y", "é"]
    segments = [tenant_segment(t) for t in [*tricky, "default", "a", "b"]]
    assert len(set(segments)) == len(segments)  # injective
    for tenant in tricky:
        seg = tenant_segment(tenant)
        assert "/" not in seg and seg not in (".", "..") and seg.startswith("~"), tenant
        assert tenant_prefix(tenant).count("/") == 3
    with pytest.raises(ValueError):
        secret_path("default", "../other")


def test_data_problems_name_keys_and_never_a_value() -> None:
    problems = check_secret_data({"ok": "v", "bad key": "hush-1", "empty": "", "big": "x" * 70000})
    text = "; ".join(problems)
    assert "secret key 'bad key'" in text and "'empty' is empty" in text
    assert "'big' is over 64 KiB" in text
    assert "hush-1" not in text and "xxxx" not in text
    assert check_secret_data({}) == ["no KEY=VALUE pairs: a secret holds at least one"]
    assert check_secret_data({"api_key": "sk-1"}) == []


VALUE = "sk-Abc/123+xyz=?&"


@pytest.mark.parametrize(
    "form",
    [
        VALUE,
        base64.b64encode(VALUE.encode()).decode(),
        base64.b64encode(VALUE.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(VALUE.encode()).decode(),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        json.dumps(VALUE)[1:-1],
    ],
    ids=["plain", "base64", "base64-unpadded", "base64-url", "url", "url-plus", "json"],
)
def test_every_encoded_form_is_replaced_by_the_reference(form: str) -> None:
    redact = Redactor({"openai#api_key": VALUE})
    assert redact(f"key: {form}!") == "key: [REDACTED:openai#api_key]!"


def test_each_line_of_a_multiline_value_and_the_longest_match_win() -> None:
    pem = "-----BEGIN KEY-----\nMIIabcdefgh\n-----END KEY-----"
    redact = Redactor({"tls#key": pem, "short#k": "MIIabc"})
    assert redact("MIIabcdefgh") == "[REDACTED:tls#key]"  # not "[...short#k]defgh"
    assert redact("a MIIabc b") == "a [REDACTED:short#k] b"
    assert redact("-----END KEY-----") == "[REDACTED:tls#key]"


def test_values_too_short_to_mean_anything_are_left_alone() -> None:
    redact = Redactor({"pin#p": "x" * (MIN_CHARS - 1)})
    assert not redact
    assert redact("xxx marks the spot") == "xxx marks the spot"


def _frames(*payloads: bytes) -> list[tuple[str, bytes]]:
    return [("stdout", b"2026-01-02T03:04:05.000000001Z " + p) for p in payloads]


def test_a_value_split_across_two_engine_frames_is_joined_before_redaction() -> None:
    # The engine cuts a long line into 16 KiB frames; only the last ends in a newline.
    value = "sk-split-across-frames-0123456789"
    assembler, redact = LineAssembler(), Redactor({"openai#api_key": value})
    lines = []
    for stream, frame in _frames(b"0" * 10 + value[:7].encode(), value[7:].encode() + b" end\n"):
        lines += assembler.feed(stream, frame)
    assert [redact(ln.text) for ln in lines] == ["0" * 10 + "[REDACTED:openai#api_key] end"]
