"""Run one training stage as a child process: `python -m training.trainers.run SPEC.json`.

Started by the job layer with the repository root as working directory (see `launch.py` for the
command under `accelerate launch`), tailed through its progress file, cancelled by killing its
process group: SIGTERM keeps Python's default action (die at once), and no DataLoader worker
processes are started. No Django here.

The spec (JSON object):
  stage          "base" | "sft" | "reward" | "ppo" | "rloo" | "dpo"
  out_dir        absolute path of the finished model. Written only at the end: the model is saved
                 into a sibling `.NAME.partial` folder, evaluated there, then renamed into place, so
                 a killed or failed run leaves no out_dir. It loads with `from_pretrained` and holds
                 the policy's tokenizer and `platform_training.json` (stage, config, metrics, inputs).
  work_dir       absolute path for checkpoints and scratch; kept across a resume.
  data           {"train": path, "eval": path or null, "texts_for_tokenizer": [paths] (base only, optional)};
                 a base that adopts a model trains nothing, so its "train" may be null.
                 JSONL as the exporters write it: base {"text"}, sft {"messages"}, reward and dpo
                 {"prompt", "chosen", "rejected"}, ppo/rloo {"prompt"}; other keys (provenance) are ignored.
  base_model     base: null (build from scratch) or a model directory to adopt; sft: the base model;
                 reward, ppo, rloo, dpo: the SFT model (for PPO, RLOO and DPO also the frozen reference).
  reward_model   ppo/rloo: the reward model directory (PPO's value model starts from it too).
  previous_policy  ppo/rloo, optional: a policy to measure the win rate against.
  preset         "tiny" | "small" | "gpu" (default "tiny"); config: overrides (see config.py).
  seed           int (default 0).
  resume         bool: go on from the newest checkpoint in work_dir (none there: start afresh).
  progress_file  absolute path; one JSON object per line is appended (main process only):
    {"event": "start", "stage", "total", "step", "world_size", "ranks", "time", ...}
        (dpo adds "trl_config": the loss_type, loss_weights, beta, label_smoothing and max_length
        its DPOTrainer resolved, and "pairs_too_long": pairs TRL left out)
    {"event": "progress", "step", "total", "metrics": {loss, learning_rate, reward_accuracy,
        mean_reward, kl, and every other number the trainer logged}, "time"}
        at every logging step, and at most once a second between them; PPO's step is the true
        global update number across resumes (its trainer restarts at 0).
    {"event": "checkpoint", "step", "path", "time"}
    {"event": "eval", "metrics": {...}, "time"}      (held-out evaluation, see evaluate.py)
    {"event": "done", "out_dir", "metrics": {training summary and eval}, "time"}   exit code 0
    {"event": "error", "message", "time"}   exit code 2 when the spec or config is refused
                                            (same checks as config.config_problems), 1 on a failure
A process other than rank 0 that fails takes the launch down without an error line: the job
layer should treat a nonzero exit without "error" as a failure too.
"""

import importlib
import json
import os
import sys
import traceback
from pathlib import Path

# Nothing is fetched at run time: every model and tokenizer comes from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from .config import PRESETS, STAGES, config_problems, stage_config  # noqa: E402
from .data import DataError, check_rows, count_rows  # noqa: E402
from .progress import Progress, world_size  # noqa: E402

REFUSED, FAILED = 2, 1


def spec_problems(spec: dict) -> list[str]:
    """Return what is wrong with the spec itself (before its config is looked at)."""
    problems = []
    if spec.get("stage") not in STAGES:
        problems.append(f"stage must be one of {', '.join(STAGES)}, not {spec.get('stage')!r}")
    for key in ("out_dir", "work_dir", "progress_file"):
        if not isinstance(spec.get(key), str) or not os.path.isabs(spec[key]):
            problems.append(f"{key} must be an absolute path")
    data = spec.get("data")
    adopting = spec.get("stage") == "base" and spec.get("base_model")
    if not isinstance(data, dict) or not (data.get("train") or adopting):
        problems.append("data must name a train file")
    else:
        for key in ("train", "eval"):
            if data.get(key) and not Path(data[key]).is_file():
                problems.append(f"the {key} file {data[key]} does not exist")
        for path in data.get("texts_for_tokenizer") or []:
            if not Path(path).is_file():
                problems.append(f"the tokenizer text file {path} does not exist")
    if spec.get("preset", "tiny") not in PRESETS:
        problems.append(f"preset must be one of {', '.join(PRESETS)}, not {spec.get('preset')!r}")
    if not isinstance(spec.get("config") or {}, dict):
        problems.append("config must be an object of settings")
    if not isinstance(spec.get("seed", 0), int):
        problems.append("seed must be an integer")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m training.trainers.run SPEC.json", file=sys.stderr)
        return REFUSED
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    progress = Progress(spec.get("progress_file"))
    try:
        problems = spec_problems(spec)
        if not problems:
            stage, data = spec["stage"], spec["data"]
            config = stage_config(stage, spec.get("preset", "tiny"), spec.get("config") or {})
            problems = config_problems(
                stage, config, train_rows=count_rows(data.get("train")), eval_rows=count_rows(data.get("eval")),
                model_dir=spec.get("base_model"), reward_model_dir=spec.get("reward_model"), processes=world_size(),
            )
        if not problems:
            # Every row is read once before torch loads: a bad line fails the run in a second, by number.
            try:
                for path in filter(None, (data.get("train"), data.get("eval"))):
                    check_rows(stage, path)
            except DataError as error:
                problems.append(str(error))
        if problems:
            message = "refused: " + "; ".join(problems)
            print(message, file=sys.stderr)
            progress.error(message)
            return REFUSED
        from .common import Job

        job = Job(
            stage=stage, out_dir=Path(spec["out_dir"]), work_dir=Path(spec["work_dir"]), train_path=data.get("train"),
            eval_path=data.get("eval"), config=config, progress=progress, seed=spec.get("seed", 0),
            resume=bool(spec.get("resume")), base_model=spec.get("base_model"),
            reward_model=spec.get("reward_model"), previous_policy=spec.get("previous_policy"),
            texts_for_tokenizer=list(data.get("texts_for_tokenizer") or []),
        )
        importlib.import_module(f"{__package__}.{STAGES[stage].module}").train(job)
        return 0
    except DataError as error:
        print(error, file=sys.stderr)
        progress.error(str(error))
        return FAILED
    except Exception as error:  # anything else: say what, keep the traceback in the child's stderr
        traceback.print_exc()
        progress.error(f"{type(error).__name__}: {error}")
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
