import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setup_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    commands = _setup_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert "regmix demo" in main_job and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_every_cli_command_in_the_readme_exists():
    from regmix.cli import build_parser

    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)
    used = set(re.findall(r"^regmix (\w+)", (ROOT / "README.md").read_text(), re.M))
    assert used <= known, used - known
