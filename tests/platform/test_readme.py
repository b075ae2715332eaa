from tests.helpers import REPO_ROOT


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci_command = (REPO_ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    section = readme.split("## Run the tests", 1)[1]
    readme_command = section.split("```sh", 1)[1].split("```", 1)[0].strip()
    assert ci_command == readme_command
