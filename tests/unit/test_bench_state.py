"""bench/state.py reads the script of any version of scorer/state.py."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from scorer.state import APPLY_UPDATES

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_state() -> ModuleType:
    # Appended, not put first: bench/ holds modules named like common ones
    # (state, pipeline, memory), which must not shadow anything else.
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_state", BENCH / "state.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_reads_todays_script_as_scorer_state_makes_it() -> None:
    state_py = BENCH.parent / "scorer" / "state.py"

    assert bench_state().read_script(state_py) == APPLY_UPDATES


def test_it_reads_a_bare_literal_and_refuses_a_module_without_one(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old_state.py"
    old.write_text('X = 1\nAPPLY_UPDATES = r"""return {}"""\n')
    made = tmp_path / "made.py"
    made.write_text("APPLY_UPDATES = make()\n")
    bench = bench_state()

    assert bench.read_script(old) == "return {}"
    with pytest.raises(SystemExit, match="no APPLY_UPDATES string constant"):
        bench.read_script(made)
