"""How many CPU threads llama.cpp should use, chosen the way llama.cpp's own tools choose.

llama-cpp-python defaults to half the logical CPUs for generation, which on a machine without
SMT (one thread per core) leaves half the cores idle. llama.cpp's ``common`` code (and so
``llama-cli``, ``llama-bench``, ``llama-server``) generates on the physical cores, because a
second hyper-thread on a core adds nothing to memory-bound token generation; prompt reading is
compute-bound batched work, which can use every logical CPU the process may run on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class ThreadPlan:
    """The thread counts for one model.

    Attributes:
        generation: Threads for generating tokens (one token at a time).
        batch: Threads for reading the prompt (batches of tokens).
    """

    generation: int
    batch: int


def logical_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def physical_cores(sys_cpu: Path = SYS_CPU) -> int:
    """The physical cores among the CPUs this process may run on.

    Counts distinct ``thread_siblings_list`` sets (as llama.cpp's ``cpu_get_num_physical_cores``
    does); falls back to the logical count where the topology cannot be read.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    siblings: set[str] = set()
    for cpu in allowed:
        try:
            text = (sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
        except OSError:
            return max(len(allowed), 1)
        siblings.add(text.strip())
    return max(len(siblings), 1)


def plan_threads(
    generation: int | None = None,
    batch: int | None = None,
    *,
    physical: int | None = None,
    logical: int | None = None,
) -> ThreadPlan:
    """The thread counts: the given ones, else physical cores for generation and every logical
    CPU for prompt reading (never fewer than for generation)."""
    physical = physical if physical is not None else physical_cores()
    logical = logical if logical is not None else logical_cpus()
    chosen = generation if generation is not None else min(physical, logical)
    return ThreadPlan(chosen, batch if batch is not None else max(logical, chosen))
