"""A config given to the command that does not read it is named for what it is, with the right command."""

import pytest

from regmix.cli import main


@pytest.mark.parametrize("argv, says", [
    (["sweep", "--config", "demo", "--out", "OUT"], "a pipeline config (it has 'corpus'), not a sweep config"),
    (["run", "--config", "quick", "--out", "OUT"], "a sweep config (it has 'store'), not a pipeline config"),
    (["demo", "--config", "quick", "--out", "OUT"], "`regmix sweep --config quick"),
])
def test_wrong_kind_of_config_is_one_line_naming_the_command(argv, says, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not out.exists()  # refused before any work


def test_every_preset_is_accepted_by_its_own_command(tmp_path):
    from regmix.cli import check_config_kind

    for name in ("demo", "demo-quick"):
        check_config_kind(name, "pipeline")
    for name in ("quick", "pile-1m"):
        check_config_kind(name, "sweep")
