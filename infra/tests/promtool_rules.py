"""`promtool check rules` on rule groups built in memory (PromQL parse checks of the checks).

Needs PyYAML and promtool on PATH.
"""
import subprocess
import tempfile

import yaml


def check_rules(groups):
    """(passed, promtool's output) for a rule file holding `groups`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
        yaml.safe_dump({"groups": groups}, fh)
        fh.flush()
        run = subprocess.run(["promtool", "check", "rules", fh.name], capture_output=True, text=True)
    return run.returncode == 0, run.stdout + run.stderr
