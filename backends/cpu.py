"""The CPU cores this process may use, counted the way compute threads see them.

`physical_cores()` counts distinct physical cores (hyper-threads of one core count once) among the
CPUs this process is allowed to run on (its affinity, e.g. `taskset` or a container's cpuset),
capped by a cgroup v2 CPU quota (`docker --cpus`) when there is one. Where sysfs says nothing
(not Linux), it falls back to the logical count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SYSFS_CPUS = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def allowed_cpus() -> set[int]:
    """Logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def physical_cores(
    cpus: set[int] | None = None, sysfs: Path = SYSFS_CPUS, cpu_max: Path = CGROUP_CPU_MAX
) -> int:
    """Physical cores among `cpus` (default: the allowed ones), at most the CPU quota."""
    cpus = allowed_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores.add(("cpu", cpu))  # no topology: count the logical CPU
            continue
        cores.add((package, core))
    return max(1, min(len(cores), _quota(cpu_max) or len(cores)))


def _quota(cpu_max: Path) -> int | None:
    """CPUs' worth of time the cgroup v2 quota allows (`max 100000` means none), rounded up."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))
