"""Counting the physical cores this process may use (sysfs topology, affinity, cgroup quota)."""

from __future__ import annotations

import pytest

from zit_agent.backends.cpu import allowed_cpus, physical_cores


def fake_sysfs(root, cores: list[tuple[int, int]]):
    """A sysfs cpu folder: logical CPU i sits on (package, core) = cores[i]."""
    for cpu, (package, core) in enumerate(cores):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


# 2 packages x 2 cores x 2 hyper-threads: logical CPUs 0-7
SMT = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)]


def test_hyper_threads_of_one_core_count_once(tmp_path):
    sysfs = fake_sysfs(tmp_path / "cpu", SMT)
    assert physical_cores(set(range(8)), sysfs, tmp_path / "none") == 4


def test_only_the_allowed_cpus_count(tmp_path):
    sysfs = fake_sysfs(tmp_path / "cpu", SMT)
    assert physical_cores({0, 4}, sysfs, tmp_path / "none") == 1  # two threads of one core
    assert physical_cores({0, 1, 4}, sysfs, tmp_path / "none") == 2


@pytest.mark.parametrize(("cpu_max", "cores"), [("150000 100000", 2), ("50000 100000", 1),
                                                  ("max 100000", 4), ("garbage", 4)])  # fmt: skip
def test_a_cgroup_quota_caps_the_count(tmp_path, cpu_max, cores):
    sysfs = fake_sysfs(tmp_path / "cpu", SMT)
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert physical_cores(set(range(8)), sysfs, tmp_path / "cpu.max") == cores


def test_without_topology_each_logical_cpu_counts(tmp_path):
    assert physical_cores({0, 1, 2}, tmp_path / "absent", tmp_path / "none") == 3


def test_this_machine_has_at_least_one():
    assert 1 <= physical_cores() <= len(allowed_cpus())
