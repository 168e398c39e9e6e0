"""The seeds stage on small fixtures in the three seed formats, and on a benchmark."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from common.io import read_records, write_records
from data_prep.__main__ import main
from data_prep.seeds import run_seeds, strip_prints

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("program, expected", [
    ("def f():\n    print('a')\n    return 1\n", "def f():\n    return 1\n"),
    ("if x:\n    print(1)\ny = 2\n", "if x:\n    pass\ny = 2\n"),  # a block left empty gets `pass`
    ("print(\n    1,\n    2)\nx = 1", "x = 1"),  # a multi-line call goes entirely
    ("print(1); x = 2\n", "print(1); x = 2\n"),  # shares its line with another statement: kept
    ("printer = 3\nprint_table(printer)\n", "printer = 3\nprint_table(printer)\n"),  # not print calls
    ('s = """\nprint me\n"""\n', 's = """\nprint me\n"""\n'),  # text inside a string
    ("for i in range(3):\n    print(i)  # show\nelse:\n    print('done')\n",
     "for i in range(3):\n    pass\nelse:\n    pass\n"),
    ("print 'py2'\nx = 1\n  print x\n", "x = 1\n"),  # does not parse: the paper's line rule
])
def test_strip_prints(program, expected):
    out = strip_prints(program)
    assert out == expected
    try:
        ast.parse(program)
    except SyntaxError:
        return
    ast.parse(out)  # a program that parsed still parses


def test_evol_oss_stack_fixtures_into_one_file(tmp_path, capsys):
    out = tmp_path / "seeds.jsonl"
    evol = run_seeds(str(FIXTURES / "evol.jsonl"), out, "evol")
    assert (evol.written, evol.bad, dict(evol.filtered)) == (2, 2, {"no def or class": 1, "no python code block": 2})
    err = capsys.readouterr().err
    assert "evol.jsonl:6: field 'response': missing" in err and "evol.jsonl:7: not valid JSON" in err
    oss = run_seeds(str(FIXTURES / "oss.jsonl"), out, "oss")
    assert (oss.written, oss.bad, dict(oss.filtered)) == (2, 1, {"not python": 1, "no python code block": 1})
    stack = run_seeds(str(FIXTURES / "stack.jsonl"), out, "stack", limit=2)  # stops before the bad row
    assert (stack.written, stack.bad, dict(stack.filtered)) == (2, 0, {"content <= 100 chars": 1})

    seeds = {r["id"]: r for r in read_records(out)}
    assert list(seeds) == ["evol_0", "evol_4", "oss_0", "oss_3", "bigcode_python_fns_1", "bigcode_python_fns_2"]
    assert seeds["evol_0"] == {"id": "evol_0", "source": "evol",
                               "instruction": "Write a function that adds two numbers.",
                               "program": "def add(a, b):\n    return a + b\n"}
    assert "__main__" not in seeds["evol_4"]["program"] and seeds["evol_4"]["program"].startswith("class Stack:")
    assert seeds["oss_3"]["program"] == "total = sum([1, 2, 3])\n"  # OSS has no def/class rule
    assert seeds["bigcode_python_fns_1"]["source"] == "bigcode_python_fns"
    assert "instruction" not in seeds["bigcode_python_fns_1"]
    assert "print" not in seeds["bigcode_python_fns_1"]["program"]
    assert "print message" not in seeds["bigcode_python_fns_2"]["program"]  # a py2 print line
    assert not (tmp_path / "seeds.bad.jsonl").exists()  # the last run had no bad rows

    again = run_seeds(str(FIXTURES / "stack.jsonl"), out, "stack", limit=3)  # resumes: one more seed
    assert (again.written, again.skipped, again.bad) == (1, 2, 1)
    assert [r["id"] for r in read_records(out)][-1] == "bigcode_python_fns_4"
    bad = read_records(tmp_path / "seeds.bad.jsonl")  # every bad row of the last run
    assert bad == [{"path": str(FIXTURES / "stack.jsonl"), "line": 4, "field": "content",
                    "message": "expected a string, got int"}]


def test_parquet_input_and_output(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "oss.jsonl").read_text().splitlines()]
    write_records(tmp_path / "oss.parquet", rows)
    summary = run_seeds(str(tmp_path / "oss.parquet"), tmp_path / "seeds.parquet", "oss")
    assert summary.written == 2 and summary.bad == 1
    assert [r["id"] for r in read_records(tmp_path / "seeds.parquet")] == ["oss_0", "oss_3"]


def test_cli_exit_status_and_help(tmp_path, capsys):
    out = str(tmp_path / "s.jsonl")
    assert main(["seeds", "--source", "stack", "--input", str(FIXTURES / "stack.jsonl"), "--output", out]) == 1
    assert "1 bad record(s) skipped: exit status 1" in capsys.readouterr().err
    assert len(read_records(out)) == 3  # the good records were finished
    assert main(["seeds", "--source", "oss", "--input", str(tmp_path / "missing.jsonl"), "--output", out]) == 2
    assert "missing.jsonl not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["seeds", "--help"])
    text = capsys.readouterr().out
    assert "--source {evol,oss,stack,benchmark}" in text and "--limit" in text


def test_benchmark_seeds(tmp_path, data_dir):
    out = tmp_path / "seeds.jsonl"
    summary = run_seeds("mbpp", out, "benchmark", data_dir=str(data_dir), limit=5)
    assert summary.written == 5
    first = read_records(out)[0]
    assert first["id"] == "mbpp_1" and first["source"] == "mbpp"
    assert first["instruction"].startswith("Write a function to find the minimum cost path")
    assert first["program"].startswith("R = 3\nC = 3\ndef min_cost(cost, m, n):")
