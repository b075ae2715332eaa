"""How much the content screen slows a generation job: the demo preset's policy writing K=4 candidates for 200
prompts, with the project's screen on and with it off, in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<yours> .venv/bin/python bench/screen_generation_bench.py

Each run is a whole generation job (training.services.serving.generation_execute, as a worker runs it: the
local transformers backend, the replies written through message_create with their work, ranking sets formed)
over 200 fresh demo prompts in a fresh project; the runs alternate off, on, off, on... (--repeat each), so both
meet the same load, and the medians are compared. With the screen on, every reply is screened as the model's
text (scrubadub's detectors, the card, IBAN and IP detectors, and a 50-phrase word list) before it is written.
The screen's own time over the same replies (texts_screen, no database) is printed too, per reply.

The model is the demo preset's shape (2 layers, 4 heads, width 128, context 128, a 1024-token tokenizer trained
on the demo's corpus), sampling as the demo deploys its policy (temperature 0.8, top-p 0.95, 16 new tokens).
Its weights are random unless --model-dir names a trained one (a demo round's policy folder): a random model
writes its 16 tokens every time, a trained one stops earlier, so give --model-dir for the figure that counts
most. Target (issue 21): the screen slows the job by at most 10%.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS, K = 200, 4
SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16, "seed": 0}


def model_build(folder: Path) -> None:
    """Save a random-weight model of the demo preset's base shape with a tokenizer of the demo's corpus."""
    import torch

    from training.demo import data
    from training.trainers.scratch import gpt_from_config, tokenizer_train
    from training.trainers.stages import STAGES

    shape = STAGES["base"].presets["demo"]
    tokenizer = tokenizer_train(data.corpus(4000), vocab_size=shape["vocab_size"])
    torch.manual_seed(0)
    model = gpt_from_config(tokenizer, layers=shape["layers"], heads=shape["heads"], width=shape["width"],
                            context=shape["context"])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--model-dir", type=Path, help="a trained policy's folder instead of random weights")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="screen-gen-bench-"))
    os.environ.setdefault("PLATFORM_DATA_DIR", str(store / "data"))
    os.environ["MODEL_STORE"] = str(store / "models")
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate.models import Message, ScreenFinding
    from annotate.services import accounts as account_services
    from annotate.services import screening, tree
    from training.demo import data
    from training.models import GenerationJob, ModelKind, ModelVersion
    from training.services import serving

    call_command("migrate", verbosity=0)
    folder = settings.MODEL_STORE / "policy"
    if args.model_dir:
        folder.parent.mkdir(parents=True)
        folder.symlink_to(args.model_dir.resolve())
    else:
        model_build(folder)
    owner, _ = get_user_model().objects.get_or_create(username="screen-bench-owner", defaults={"is_staff": True})
    words = [f"{a}{b}" for a in ("bad", "vile", "nasty", "awful", "gross") for b in ("", "ness", "ly", "er", "est",
                                                                                    " word", " thing", " stuff",
                                                                                    " talk", " bot")]
    problems = data.prompt_pool(args.prompts)
    shares = {False: [], True: []}

    # Time spent inside the screen during the jobs (message_create calls screening.texts_screen for every reply):
    # the screen's share of a job, which other processes' load moves far less than the difference of two jobs.
    inside = [0.0]
    screen = screening.texts_screen

    def timed_screen(**kwargs):
        started = time.perf_counter()
        try:
            return screen(**kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    screening.texts_screen = timed_screen

    def run(attempt: int, on: bool) -> tuple[float, float, GenerationJob, int]:
        project = account_services.project_create(name=f"screen bench {attempt} {'on' if on else 'off'}",
                                                  created_by=owner)
        project.settings.replies_per_ranking = K
        project.settings.save()
        if on:
            screening.screen_configure(project=project, enabled=True, words=words)
        for problem in problems:
            tree.message_create(project=project, parent=None, role="user", text=problem.prompt, source="import")
        version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="policy")
        serving.deployment_create(project=project, model_version=version, by=owner, sampling=SAMPLING)
        job = GenerationJob.objects.create(project=project, max_prompts=args.prompts, requested_by=owner)
        inside[0] = 0.0
        started, cpu = time.perf_counter(), time.process_time()
        status = serving.generation_execute(job_id=job.id)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        job.refresh_from_db()
        assert status == "succeeded", job.error
        shares[on].append(inside[0] / took)
        return took, cpu, job, ScreenFinding.objects.filter(project=project).count()

    print(f"{args.prompts} prompts, K={K}, model {'at ' + str(args.model_dir) if args.model_dir else 'demo shape, random'}"
          f"; load {os.getloadavg()[0]:.2f} at the start", flush=True)
    # Untimed: the first of each loads its code (torch and the model; scrubadub's detectors) and warms the database.
    run(-1, False)
    run(-1, True)
    times, cpus = {False: [], True: []}, {False: [], True: []}
    shares.update({False: [], True: []})
    last_on = None
    for attempt in range(args.repeat):
        for on in (False, True) if attempt % 2 == 0 else (True, False):
            took, cpu, job, findings = run(attempt, on)
            times[on].append(took)
            cpus[on].append(cpu)
            last_on = job if on else last_on
            print(f"  {attempt + 1} screen {'on ' if on else 'off'}: {took:.2f} s ({cpu:.2f} s CPU, "
                  f"{shares[on][-1] * 100:.2f}% of it in the screen), "
                  f"{job.replies_written} replies written, {job.replies_screened} blocked, {findings} findings",
                  flush=True)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    # The screen alone, over the replies the last screened job wrote.
    texts = list(Message.objects.filter(project=last_on.project, role="assistant").values_list("text", flat=True))
    project_settings = screening.screen_settings(project=last_on.project)
    started = time.perf_counter()
    screen(project=last_on.project, texts=texts, source="model", settings=project_settings)
    alone = (time.perf_counter() - started) / max(1, len(texts))
    print(f"median job: screen off {off:.2f} s, on {on:.2f} s; on/off {on / off:.3f} "
          f"({(on / off - 1) * 100:+.1f}%; target at most +10%)")
    print(f"median CPU (this process, all threads; less moved by other processes' load): off {cpu_off:.2f} s, "
          f"on {cpu_on:.2f} s; on/off {cpu_on / cpu_off:.3f} ({(cpu_on / cpu_off - 1) * 100:+.1f}%)")
    print(f"time inside the screen (texts_screen) during a job with it on: median {statistics.median(shares[True]) * 100:.2f}%"
          f" of the job (off: {statistics.median(shares[False]) * 100:.2f}%, the check that it is off)")
    print(f"the screen alone: {alone * 1000:.2f} ms per reply ({len(texts)} replies)")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())


if __name__ == "__main__":
    main()
