"""Find and run llama.cpp's own ``llama-bench`` (built by ``scripts/build-llama-tools.sh`` from
the llama.cpp revision llama-cpp-python vendors), for ``bench speed`` to compare against."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def find_llama_bench(explicit: Path | None = None) -> Path | None:
    """``explicit``, else ``$LLAMA_BENCH``, else ``llama-bench`` on the PATH, else the newest
    build in the tools cache (``$LLAMA_TOOLS_DIR``, ``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    if explicit is not None:
        return explicit if explicit.is_file() else None
    if os.environ.get("LLAMA_BENCH"):
        path = Path(os.environ["LLAMA_BENCH"])
        return path if path.is_file() else None
    on_path = shutil.which("llama-bench")
    if on_path:
        return Path(on_path)
    roots = [os.environ.get("LLAMA_TOOLS_DIR"), os.environ.get("XDG_CACHE_HOME")]
    folders = [Path(roots[0])] if roots[0] else []
    if roots[1]:
        folders.append(Path(roots[1]) / "metharme-adventure" / "llama-tools")
    folders.append(Path.home() / ".cache" / "metharme-adventure" / "llama-tools")
    for folder in folders:
        found = sorted(folder.glob("*/bin/llama-bench"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


@dataclass(frozen=True)
class LlamaBenchRow:
    """One test of llama-bench: tokens per second at a thread count."""

    threads: int
    n_prompt: int
    n_gen: int
    depth: int
    tokens_per_s: float
    stddev: float


class LlamaBenchError(Exception):
    """llama-bench failed or printed something unexpected; the message is one line."""


def parse(output: str) -> list[LlamaBenchRow]:
    """The rows of llama-bench's ``-o json`` output."""
    try:
        data = json.loads(output)
        return [
            LlamaBenchRow(
                threads=int(row["n_threads"]),
                n_prompt=int(row["n_prompt"]),
                n_gen=int(row["n_gen"]),
                depth=int(row.get("n_depth", 0)),
                tokens_per_s=float(row["avg_ts"]),
                stddev=float(row.get("stddev_ts", 0.0)),
            )
            for row in data
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise LlamaBenchError(f"unexpected llama-bench output: {exc}") from None


def run(
    binary: Path,
    model: Path,
    *,
    threads: list[int],
    n_prompt: int,
    n_gen: int,
    depth: int,
    repetitions: int,
    n_gpu_layers: int,
    timeout_s: float = 1800,
) -> list[LlamaBenchRow]:
    """Run prompt reading (``-p``) and generation (``-n``) tests at each thread count."""
    command = [
        str(binary),
        "-m",
        str(model),
        "-t",
        ",".join(str(count) for count in threads),
        "-p",
        str(n_prompt),
        "-n",
        str(n_gen),
        "-d",
        str(depth),
        "-r",
        str(repetitions),
        "-ngl",
        str(max(n_gpu_layers, 0) if n_gpu_layers >= 0 else 999),
        "-o",
        "json",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlamaBenchError(f"llama-bench did not run: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LlamaBenchError(f"llama-bench exited with {done.returncode}: {last}")
    return parse(done.stdout)
