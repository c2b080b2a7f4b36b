from aegis_ray.core import naming as N
from aegis_ray.core.models.loading import parse_agent
from aegis_ray.core.placement.demand import Demand, bundle_of, demand_of
from aegis_ray.core.placement.dimensions import Resources

GiB, MiB = 2**30, 2**20


def manifest(resources: dict[str, object], tags: list[str]):  # type: ignore[no-untyped-def]
    return parse_agent(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "Agent",
            "metadata": {"name": "a"},
            "spec": {
                "runtime": {"image": "busybox"},
                "security": {"resources": resources},
                "execution": {"target_tags": tags},
            },
        }
    )


def test_demand_comes_from_the_manifest_limits_and_tags() -> None:
    m = manifest({"cpu": "1.5", "memory": "2Gi", "disk": "512Mi", "gpu": 1}, ["gpu", "eu"])
    assert demand_of(m) == Demand(Resources(1500, 2 * GiB, 512 * MiB, 1, slots=1), ("gpu", "eu"))


def test_bundle_asks_for_every_dimension_a_slot_and_each_tag() -> None:
    bundle = bundle_of(Demand(Resources(1500, 2 * GiB, 512 * MiB, 1, slots=1), ("gpu", "eu")))
    assert bundle == {
        "CPU": 1.5,
        "memory": 2 * GiB,
        "GPU": 1,
        N.DISK: 0.5,
        N.EXECUTOR: 1,
        "aegis/tag/gpu": N.TAG_AMOUNT,
        "aegis/tag/eu": N.TAG_AMOUNT,
    }


def test_bundle_omits_zero_gpu_and_zero_disk() -> None:
    bundle = bundle_of(Demand(Resources(250, 32 * MiB, 0, 0, slots=1), ()))
    assert bundle == {"CPU": 0.25, "memory": 32 * MiB, N.EXECUTOR: 1}
