"""The ``earlyia`` entry point: a fast listing, and each command's full parser when it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from earlyia.cli import main as cli_main


def test_listing_names_every_command_with_its_modules_own_help():
    full = cli_main.build_parser("*")
    stub = cli_main.build_parser(None)
    (full_sub,) = [a for a in full._actions if a.dest == "command"]
    (stub_sub,) = [a for a in stub._actions if a.dest == "command"]
    full_help = {c.dest: c.help for c in full_sub._choices_actions}
    stub_help = {c.dest: c.help for c in stub_sub._choices_actions}
    assert list(stub_help) == list(cli_main.COMMANDS)
    assert full_help == stub_help  # the one-line help cannot drift from the module's parser


def test_help_imports_no_command_module_nor_the_scientific_stack():
    code = (
        "import sys, contextlib, io\n"
        "from earlyia.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas', "
        "'scipy', 'sklearn', 'pyarrow')"
        " or (m.startswith('earlyia.cli.') and m != 'earlyia.cli.main'))\n"
        "assert 'followup' in out.getvalue()\n"
        "print(','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["score", "x"], "score"),
        (["--version"], None),
        (["nope"], None),
        (["evaluate-early", "--help"], "evaluate-early"),
    ],
)
def test_command_of(argv, command):
    assert cli_main._command_of(argv) == command


def test_a_command_still_gets_its_full_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["models", "show", "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out
