"""Which way the imports run (DESIGN.md): read every module's imports, at module level and inside
functions, and the management commands it calls by name.

- `annotate` never imports `training`, so the two apps never import each other in a loop;
- the core apps never import the demo (`training.demo`) nor call a demo command by name;
- `platform_common` (the pieces both apps use) imports neither app, nor the configuration;
- the apps never import the configuration (`platform_config`), which imports them (its URLs);
- the trainers and the generation package import no Django and neither app.
"""

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

DEMO_COMMANDS = {path.stem for path in (REPO_ROOT / "training/demo/management/commands").glob("*.py")} - {"__init__"}


def modules_under(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports anywhere in its code, and `call_command:NAME` for commands it calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "call_command" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(f"call_command:{node.args[0].value}")
    return found


def offences(folder: str, forbidden, *, skip: str | None = None) -> list[str]:
    found = []
    for path in modules_under(REPO_ROOT / folder):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if skip and relative.startswith(skip):
            continue
        found += [f"{relative} imports {name}" for name in sorted(imports_of(path)) if forbidden(name)]
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_annotate_never_imports_training_nor_the_configuration():
    assert offences("annotate", lambda name: within(name, "training", "platform_config")) == []


def test_the_core_apps_never_import_the_demo_nor_call_its_commands():
    def demo(name):
        return within(name, "training.demo") or name.removeprefix("call_command:") in DEMO_COMMANDS
    assert DEMO_COMMANDS >= {"demo", "demo_annotate", "demo_rounds"}
    assert offences("annotate", demo) + offences("training", demo, skip="training/demo/") == []
    assert offences("platform", demo) == []


def test_training_never_imports_the_configuration():
    assert offences("training", lambda name: within(name, "platform_config"), skip="training/demo/") == []


def test_the_shared_pieces_import_neither_app_nor_the_configuration():
    assert offences("platform/platform_common", lambda name: within(name, "annotate", "training", "platform_config")) == []


@pytest.mark.parametrize("folder", ["training/trainers", "training/generation"])
def test_trainers_and_generation_import_no_django_and_neither_app(folder):
    def app_or_django(name):
        inside = within(name, "training.trainers", "training.generation")
        return within(name, "django", "rest_framework", "annotate", "procrastinate") or (
            within(name, "training") and not inside)
    assert offences(folder, app_or_django) == []


def test_the_check_itself_sees_imports_inside_functions_and_commands_called_by_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from training.demo.rounds import round_run\n    call_command('demo_rounds')\n")
    assert {"training.demo.rounds", "call_command:demo_rounds"} <= imports_of(sample)


@pytest.mark.parametrize("app", ["annotate", "training"])
def test_selectors_never_import_services(app):
    """Reads never reach writes: a rule both need lives where both can import it (annotate/rules.py)."""
    selectors = REPO_ROOT / app / "selectors"
    paths = list(selectors.rglob("*.py")) if selectors.is_dir() else [REPO_ROOT / app / "selectors.py"]
    found = [f"{path.relative_to(REPO_ROOT)} imports {name}" for path in paths for name in sorted(imports_of(path))
             if ".services" in name or name.endswith(".services")]
    assert found == []
