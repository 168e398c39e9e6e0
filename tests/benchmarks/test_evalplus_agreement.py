"""benchmarks/evalplus_agreement.py, our side of it (EvalPlus itself lives in its own venv and is not
installed in CI): the candidates it makes from a real HumanEval+ task, the samples it reads, and our
verdicts on them in both modes."""
import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def pool():
    from sandbox import SandboxPool

    with SandboxPool(workers=2, timeout_s=20.0, memory_mb=4096, program_timeout_s=300.0) as p:
        yield p


def test_samples_in_both_formats(tmp_path):
    import evalplus_agreement as ea

    path = tmp_path / "s.jsonl"
    rows = [{"id": "humanevalplus_12", "samples": ["```python\ndef f():\n    return 1\n```", "no code"]},
            {"task_id": "Mbpp/2", "solution": "def g(): pass"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = ea.read_samples(str(path))
    assert [s["task_id"] for s in got] == ["HumanEval/12", "HumanEval/12", "Mbpp/2"]
    assert got[0]["solution"].strip() == "def f():\n    return 1" and got[2]["solution"] == "def g(): pass"


def test_our_verdicts_on_a_real_task_in_both_modes(pool, data_dir, tmp_path):
    import evalplus_agreement as ea
    from data_prep.benchmarks import load_benchmark
    from data_prep.benchmarks.files import read_jsonl

    row = next(r for r in read_jsonl(data_dir / "HumanEvalPlus.jsonl.gz") if r["task_id"] == "HumanEval/0")
    rec = next(r.to_dict() for r in load_benchmark("humanevalplus", data_dir) if r.id == "humanevalplus_0")
    rec["n_base"] = len(dict.fromkeys(json.dumps(x) for x in row["base_input"]))
    made = dict(ea.candidates(row, "humaneval", floats=False))
    assert {"canonical", "mutant_return", "slow_first_call", "slow_x6", "slow_2ms"} <= set(made)
    cands = [{"cid": k, "task_id": "HumanEval/0", "kind": k, "solution": made[k]}
             for k in ("canonical", "mutant_return", "slow_first_call")]
    args = Namespace(output_dir=str(tmp_path))
    default, _, _ = ea.run_ours(args, {"HumanEval/0": rec}, cands, "default", pool)
    evalplus, _, setup_s = ea.run_ours(args, {"HumanEval/0": rec}, cands, "evalplus", pool)
    assert default["canonical"]["plus"] and evalplus["canonical"]["plus"]
    assert not default["mutant_return"]["base"] and not evalplus["mutant_return"]["base"]
    # 1.3 s of CPU on the first call: within the fixed budget, past EvalPlus' 1 s floor
    assert default["slow_first_call"]["plus"] and not evalplus["slow_first_call"]["base"]
    assert evalplus["slow_first_call"]["timeout"] and setup_s > 0


def test_numpy_fault_on_huge_ints_is_listed_and_our_oracle_does_not_share_it():
    # HumanEval/34's plus input 145: sorted(set(...)) mixes a float with an int beyond int64. numpy makes
    # that an object array and np.allclose raises, so EvalPlus errors on an answer inside its tolerance
    # (the float moved by 1e-9) after == failed; our oracle compares element by element and passes it.
    import evalplus_agreement as ea
    import numpy as np

    from sandbox.oracles import _evalplus_check

    exp = [-5555555555555555555555, -1, 0, 1, 1.2, 2, 2.1, 3, 5]
    out = [v + 1e-9 * (abs(v) + 1) if type(v) is float else v for v in exp]
    with pytest.raises(TypeError):
        np.allclose(out, exp, rtol=1e-07, atol=1e-06)
    assert _evalplus_check(out, exp, 1e-06)
    assert not _evalplus_check([*out[:4], 1.2001, *out[5:]], exp, 1e-06)

    c = {"task_id": "HumanEval/34", "kind": "float_1e-09"}
    ep, ours = {"plus": "fail"}, {"plus": True, "first_failure": ""}
    assert ea.explain(c, ep, None, ours, None, "plus").startswith("EvalPlus wrong: its tolerance check")
    other = {**c, "kind": "float_0.0001"}
    assert ea.explain(other, ep, None, ours, None, "plus").startswith("unexplained")


def test_a_starved_evalplus_timeout_is_undecided_only_for_correct_candidates():
    # EvalPlus limits wall-clock time: a correct-by-construction candidate whose process had well under a
    # CPU while it was timed may fail there and pass when the machine is quiet (Mbpp/123's slow_x6 did)
    import evalplus_agreement as ea

    ours = {"plus": True, "first_failure": ""}
    starved = {"plus": "fail", "wall_s": 2.3, "cpu_s": 0.9}
    slow = {"task_id": "Mbpp/123", "kind": "slow_x6"}
    assert ea.explain(slow, starved, None, ours, None, "plus").startswith("undecided: EvalPlus' wall clock")
    assert ea.explain(slow, starved, {"plus": "fail"}, ours, None, "plus").startswith("undecided")
    # a candidate that had its CPU, one that may be wrong (a mutant, a model sample), or old data: unexplained
    assert ea.explain(slow, {**starved, "cpu_s": 2.2}, None, ours, None, "plus").startswith("unexplained")
    mutant = {**slow, "kind": "mutant_compare"}
    assert ea.explain(mutant, starved, None, ours, None, "plus").startswith("unexplained")
    assert ea.explain(slow, {"plus": "fail", "wall_s": 2.3}, None, ours, None, "plus").startswith("unexplained")
    # and a disagreement the other way (EvalPlus passes, we fail) is never excused
    assert ea.explain(slow, {**starved, "plus": "pass"}, None, {"plus": False, "first_failure": "test 3: timeout"},
                      None, "plus").startswith("unexplained")
