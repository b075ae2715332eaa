"""The command line that runs one training stage as a child process.

The job layer writes a spec file (see `training.trainers.run`), starts `child_command(spec)` with
the repository root as its working directory in a process group of its own, tails the progress
file, and cancels by killing the group. No torch import here: the worker calls this before any
training library is loaded.

- One process: `python -m training.trainers.run SPEC` (CPU, or the one GPU there is).
- Several processes on a CPU-only machine: `accelerate launch --multi_gpu --num_processes N`; the
  trainers set `use_cpu`, so the processes meet over gloo. (`accelerate launch --cpu` with several
  processes wants mpirun, and without it quietly runs one process.)
- Several GPUs: one process per GPU with DeepSpeed ZeRO (`platform/accelerate/zero2.yaml`, or
  zero3 for models whose optimizer state does not fit one GPU). DeepSpeed itself is not in
  requirements.txt: GPU nodes install it (`pip install deepspeed`) beside their CUDA build of torch.

On a cluster, every node runs the same command with its own rank, sharing one filesystem for the
spec, work_dir and out_dir (only global rank 0 writes the progress file and the model):

    accelerate launch --config_file platform/accelerate/zero3.yaml \\
        --num_machines 2 --machine_rank $NODE_RANK --num_processes 16 \\
        --main_process_ip $HEAD_NODE_IP --main_process_port 29500 \\
        -m training.trainers.run /shared/runs/42/spec.json

(`--num_processes` is the total over all nodes: 2 nodes x 8 GPUs. Under Slurm, NODE_RANK is
`$SLURM_NODEID` and the head node the first of `scontrol show hostnames $SLURM_JOB_NODELIST`.)
"""

import json
import socket
import sys
from pathlib import Path

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "platform" / "accelerate"
MODULE = "training.trainers.run"


def free_port() -> int:
    """Return a TCP port free on this machine now, so runs started side by side do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_write(work: Path, *, stage: str, train: Path, base_model: Path, preset: str, config: dict) -> Path:
    """Write a one-stage spec for training outside a round (the benchmarks): `train` with no held-out
    file, seed 0, the model in work/model, checkpoints in work/work, progress in work/progress.jsonl."""
    spec = {"stage": stage, "out_dir": str(work / "model"), "work_dir": str(work / "work"),
            "data": {"train": str(train), "eval": None}, "base_model": str(base_model), "preset": preset,
            "config": config, "seed": 0, "resume": False, "progress_file": str(work / "progress.jsonl")}
    path = work / "spec.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


def child_command(spec_path: str, *, processes: int = 1, gpus: int = 0, zero_stage: int = 2,
                  main_process_port: int | None = None) -> list[str]:
    """Return the argv that trains the stage described by `spec_path`.

    `processes` counts training processes on a CPU-only machine; with `gpus` > 0 there is one
    process per GPU and `processes` is ignored. `zero_stage` picks the DeepSpeed config (2 or 3)
    for several GPUs.
    """
    if processes < 1 or gpus < 0:
        raise ValueError(f"need at least one process and no negative GPU count (processes={processes}, gpus={gpus})")
    count = gpus if gpus > 0 else processes
    if count == 1:
        return [sys.executable, "-m", MODULE, str(spec_path)]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
              "--main_process_port", str(main_process_port or free_port())]
    if gpus > 0:
        if zero_stage not in (2, 3):
            raise ValueError(f"zero_stage must be 2 or 3, not {zero_stage}")
        launch += ["--config_file", str(ACCELERATE_CONFIGS / f"zero{zero_stage}.yaml")]
    else:
        launch += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return launch + ["--num_processes", str(count), "-m", MODULE, str(spec_path)]
