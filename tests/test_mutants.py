"""tools/mutants.py's list stays applicable: every mutant's old text occurs exactly once in the current
code and every test it names exists, so a refactoring that moves code away from a mutant shows up here
(in milliseconds) rather than as a stale mutant when the slow tool is next run."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mutants_tool", ROOT / "tools" / "mutants.py")
mutants = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutants  # its dataclasses look their module up there
_spec.loader.exec_module(mutants)


def test_every_mutant_applies_once_and_changes_the_code() -> None:
    names = [m.name for m in mutants.MUTANTS]
    assert len(set(names)) == len(names)
    for mutant in mutants.MUTANTS:
        assert mutants.check(mutant) is None, f"{mutant.name}: {mutants.check(mutant)}"
        assert mutant.new != mutant.old and mutant.tests, mutant.name


def test_every_targeted_test_exists() -> None:
    for mutant in mutants.MUTANTS:
        for target in mutant.tests:
            path, _, name = target.partition("::")
            assert (ROOT / path).is_file(), f"{mutant.name}: no {path}"
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text(), re.M), f"{mutant.name}: no {target}"


def test_a_stale_mutant_is_reported_not_applied(tmp_path) -> None:
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    twice = mutants.Mutant("twice", "a.py", "x = 1", "x = 2", ("tests/t.py",))
    gone = mutants.Mutant("gone", "a.py", "y = 1", "y = 2", ("tests/t.py",))
    assert mutants.check(twice, tmp_path) == "its old text occurs 2 times in a.py (must be exactly once)"
    assert mutants.check(gone, tmp_path) == "its old text occurs 0 times in a.py (must be exactly once)"
