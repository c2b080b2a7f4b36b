import pytest

from aegis_ray.core.models.quantity import (
    format_cpu,
    format_duration,
    format_memory,
    parse_cpu,
    parse_duration,
    parse_memory,
)

Ki, Mi, Gi, Ti = 2**10, 2**20, 2**30, 2**40


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512Mi", 512 * Mi),
        ("1Gi", Gi),
        ("2Ti", 2 * Ti),
        ("100Ki", 100 * Ki),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("1k", 1000),
        ("1048576", Mi),
        (" 1.5Gi ", 3 * Gi // 2),
        (4096, 4096),
        (8.0, 8),
    ],
)
def test_memory_sizes_parse_to_bytes(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    "bad", ["-1Gi", -5, "1.5x", "12Zi", "", "Gi", "1 Gi GB", "0.5", True, None]
)
def test_memory_rejects_what_is_not_a_size(bad: object) -> None:
    with pytest.raises(ValueError, match="must be a size like 512Mi, 1Gi or a number of bytes"):
        parse_memory(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("600s", 600),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
        (90, 90),
        (1.5, 1.5),
        ("45", 45),
    ],
)
def test_durations_parse_to_seconds(text: str | float, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["10y", "-5s", "s", "1h 30m", -1, float("inf"), "", False])
def test_duration_rejects_junk(bad: object) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (500, 500),
        ("500m", 500),
        ("500", 500),
        (0.5, 500),
        ("0.5", 500),
        ("2.0", 2000),
        (1.25, 1250),
        ("1.5", 1500),
    ],
)
def test_cpu_ints_are_millicores_and_decimals_are_cores(value: object, expected: int) -> None:
    assert parse_cpu(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["-1", -100, "1.5 cores", "0.0005", "m", True, "1e3"])
def test_cpu_rejects_junk_and_sub_millicore(bad: object) -> None:
    with pytest.raises(ValueError, match="must be millicores"):
        parse_cpu(bad)  # type: ignore[arg-type]


def test_formatting_is_compact_and_parses_back() -> None:
    assert format_memory(512 * Mi) == "512Mi"
    assert format_memory(3 * Gi // 2) == "1.5Gi"
    assert format_memory(100) == "100"
    assert format_duration(600) == "10m"
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"
    assert format_cpu(1500) == "1500m"
    assert format_memory(12345) == "12.1Ki"  # approximate when not a whole unit
    assert parse_memory("1.1Gi") == 1181116007  # fractions round up to whole bytes
    for size in (6 * Mi, 2 * Ti, 1023 * Ki, 999):
        assert parse_memory(format_memory(size)) == size
    for seconds in (1.0, 61.5, 7 * 86400.0):
        assert parse_duration(format_duration(seconds)) == seconds
