from flan_jax import cli


def test_unknown_command_fails_with_usage(capsys):
  assert cli.main(["frobnicate"]) == 2
  assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in out
