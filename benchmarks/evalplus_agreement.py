"""EvalPlus 0.3.1 vs our path on the same candidates, in one run: agreement, disagreements, samples/s.

    nice python benchmarks/evalplus_agreement.py [--datasets humaneval,mbpp] [--limit 20] [--samples S.jsonl]
        [--workers 2] [--modes default,evalplus] [--evalplus_python /work/venvs/evalplus/bin/python]

Candidates per task (all made here, deterministically, from the canonical solution): the canonical
solution; AST mutants (a comparison flipped, an integer constant + 1, + and - swapped, the last return
replaced by None: some of them loop or crawl); slow-but-correct variants (1.3 s of CPU on the first call;
the reference computed 6 times per call; 2 ms more per call); for tasks with float answers, the answer
perturbed by 1e-9 (inside EvalPlus' tolerance) and 1e-4 (outside); and, with --samples, real samples
(EvalPlus' format: task_id with solution or completion).

EvalPlus: pip-installed evalplus==0.3.1 in its own venv, pointed at the local files with
HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH, run as its evaluator runs each sample
(``evalplus.evaluate.check_correctness`` in a ProcessPoolExecutor, ground truth from its
``get_groundtruth``, fast_check as its default) on the selected tasks; ``evaluate()`` itself needs
samples for every task. Ours: ``data_prep.benchmarks``' HumanEval+/MBPP+ records through the sandbox
with ``apps.bon_eval``'s limits, in the default mode (fixed budgets, every test) and the EvalPlus mode
(``data_prep/evalplus_mode.py``). Both use --workers parallel slots. Base = the base inputs pass; plus =
base and plus inputs pass (EvalPlus' "+" score). Set-up (EvalPlus' ground truth, our reference times:
both cached) is timed apart from samples/s; EvalPlus and our modes take turns on --blocks blocks of
the candidates, so load from other processes falls on both. Every disagreement is listed with a category; candidates
EvalPlus and we disagree on are run through EvalPlus a second time to see whether its verdict repeats.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = {"humaneval": ("HumanEvalPlus.jsonl.gz", "humanevalplus", "HUMANEVAL_OVERRIDE_PATH"),
        "mbpp": ("MbppPlus.jsonl.gz", "mbppplus", "MBPP_OVERRIDE_PATH")}
# EvalPlus 0.3.1 faults where our verdict is the right one (explained in docs/benchmarks.md).
EVALPLUS_WRONG = {
    "HumanEval/32": "EvalPlus wrong: find_zero's oracle `continue`s past recording a passed input, so every "
                    "answer fails, the canonical one included",
    "Mbpp/255": "EvalPlus wrong: the correct output (1.66M tuples) exceeds EvalPlus' 4 GiB address-space cap",
}
# ... and faults that only some candidates of a task meet: (task, candidate kind)
EVALPLUS_WRONG_FOR = {
    ("HumanEval/34", "float_1e-09"): "EvalPlus wrong: its tolerance check, np.allclose, raises TypeError on a list "
                                     "that mixes floats with ints beyond int64 (plus input 145: numpy makes it an "
                                     "object array), so an answer inside the tolerance errors; exact answers pass "
                                     "because the check runs only after == failed",
    **{("Mbpp/392", kind): "EvalPlus wrong: its per-sample process is forked from a pool worker and inherits its "
                           "address space under a 4 GiB RLIMIT_AS; after that worker held Mbpp/255's expected "
                           "outputs, plus input 5 runs out of memory (benchmarks/evalplus_fork_memory.py shows it)"
       for kind in ("canonical", "slow_2ms")},
}
BURN = ("def _burn(s):\n    import time\n    t = time.process_time()\n"
        "    while time.process_time() - t < s:\n        pass\n")


# Candidates computing the canonical answer: EvalPlus can fail them only on a time limit (or its own fault)
CORRECT_KINDS = ("canonical", "slow_first_call", "slow_x6", "slow_2ms")
# Below this share of a CPU (the candidate process's CPU over its wall time under EvalPlus), a wall-clock
# limit measures the machine's load more than the candidate: EvalPlus' quiet verdict may differ
STARVED_SHARE = 0.7


# ----------------------------------------------------------------------------- EvalPlus side (its venv)
def evalplus_worker(inp: str, out: str) -> None:
    """Runs under EvalPlus' interpreter: check_correctness for every candidate, as evaluate() does."""
    from concurrent.futures import ProcessPoolExecutor

    from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import check_correctness, get_groundtruth

    job = json.load(open(inp))
    ds = job["dataset"]
    problems = get_human_eval_plus() if ds == "humaneval" else get_mbpp_plus()
    full_hash = get_human_eval_plus_hash() if ds == "humaneval" else get_mbpp_plus_hash()
    tasks = sorted(job["tasks"])  # ground truth for all selected tasks, cached across blocks
    problems = {t: problems[t] for t in tasks}
    t0 = time.time()
    subset = f"{full_hash}-{hashlib.sha1(json.dumps(tasks).encode()).hexdigest()[:12]}"  # its cache, per subset
    expected = get_groundtruth(problems, subset, MBPP_OUTPUT_NOT_NONE_TASKS if ds == "mbpp" else [])
    setup_s = time.time() - t0
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=job["workers"]) as ex:
        futs = [ex.submit(_timed, check_correctness, ds, i, problems[c["task_id"]], c["solution"],
                          expected[c["task_id"]], False, True, c["cid"]) for i, c in enumerate(job["candidates"])]
        res = [f.result() for f in futs]
    wall = time.time() - t0
    json.dump({"setup_s": setup_s, "wall_s": wall, "results": {
        # plus: EvalPlus' "+" verdict, base and plus inputs both pass
        r["_identifier"]: {"base": r["base"][0], "plus": r["plus"][0] if r["base"][0] == "pass" else r["base"][0],
                           "wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in res}}, open(out, "w"))


def _timed(fn, *a):
    """fn's result with its wall time and the CPU of the processes it reaped (check_correctness runs the
    candidate in a child it joins): their ratio says whether the candidate had a CPU while EvalPlus timed it."""
    import resource

    def children_cpu():
        u = resource.getrusage(resource.RUSAGE_CHILDREN)
        return u.ru_utime + u.ru_stime

    t0, c0 = time.time(), children_cpu()
    r = fn(*a)
    r["wall_s"], r["cpu_s"] = time.time() - t0, children_cpu() - c0
    return r


def run_evalplus(args, ds: str, cands: list[dict], tag: str, tasks: list[str]) -> dict:
    work = Path(args.output_dir)
    inp, out = work / f"evalplus-{ds}-{tag}-in.json", work / f"evalplus-{ds}-{tag}-out.json"
    inp.write_text(json.dumps({"dataset": ds, "workers": args.workers, "candidates": cands, "tasks": tasks}))
    env = {**os.environ, DATA[ds][2]: str(Path(args.data_dir) / DATA[ds][0]),
           "XDG_CACHE_HOME": str(work / "evalplus_cache")}
    subprocess.run([args.evalplus_python, __file__, "_evalplus_worker", str(inp), str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------- candidates
class _Mutate(ast.NodeTransformer):
    """Change the first node that `kind` applies to."""

    SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}

    def __init__(self, kind: str):
        self.kind, self.done = kind, False

    def visit_Compare(self, node):
        self.generic_visit(node)
        if self.kind == "compare" and not self.done and type(node.ops[0]) in self.SWAP:
            node.ops[0], self.done = self.SWAP[type(node.ops[0])](), True
        return node

    def visit_Constant(self, node):
        if self.kind == "const" and not self.done and type(node.value) is int:
            self.done = True
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if self.kind == "binop" and not self.done and isinstance(node.op, (ast.Add, ast.Sub)):
            node.op, self.done = (ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()), True
        return node


def mutants(code: str) -> list[tuple[str, str]]:
    out = []
    for kind in ("compare", "const", "binop", "return"):
        tree = ast.parse(code)
        if kind == "return":
            rets = [n for n in ast.walk(tree) if isinstance(n, ast.Return) and n.value is not None]
            if not rets:
                continue
            rets[-1].value = ast.Constant(None)
        else:
            m = _Mutate(kind)
            tree = m.visit(tree)
            if not m.done:
                continue
        new = ast.unparse(ast.fix_missing_locations(tree))
        if new != ast.unparse(ast.parse(code)):
            out.append((f"mutant_{kind}", new))
    return out


def _wrap(code: str, ep: str, body: str, extra: str = "") -> str:
    return (f"{code}\n\n{BURN}{extra}_orig_{ep} = {ep}\n\n\ndef {ep}(*a):\n" + body.replace("ORIG", f"_orig_{ep}"))


def candidates(row: dict, ds: str, floats: bool) -> list[tuple[str, str]]:
    ep = row["entry_point"]
    code = (row["prompt"] + row["canonical_solution"]) if ds == "humaneval" else row["canonical_solution"]
    out = [("canonical", code)] + mutants(code)
    out.append(("slow_first_call", _wrap(code, ep, "    if _first:\n        _first.pop()\n        _burn(1.3)\n"
                                                  "    return ORIG(*a)\n", "_first = [1]\n")))
    out.append(("slow_x6", _wrap(code, ep, "    import copy\n    for _ in range(5):\n        ORIG(*copy.deepcopy(a))\n"
                                          "    return ORIG(*a)\n")))
    out.append(("slow_2ms", _wrap(code, ep, "    _burn(0.002)\n    return ORIG(*a)\n")))
    if floats:
        perturb = ("def _perturb(v, d):\n    if type(v) is float:\n        return v + d * (abs(v) + 1)\n"
                   "    if type(v) in (list, tuple):\n        return type(v)(_perturb(x, d) for x in v)\n"
                   "    return v\n")
        for d in ("1e-09", "0.0001"):
            out.append((f"float_{d}", _wrap(code, ep, f"    return _perturb(ORIG(*a), {d})\n", perturb)))
    return out


# ----------------------------------------------------------------------------- our side
def run_ours(args, recs: dict, cands: list[dict], mode: str, pool) -> tuple[dict, float, float]:
    from apps.bon_eval import parse_args as bon_args
    from data_prep.evalplus_mode import evalplus_time_limits
    from sandbox import Job

    bon = bon_args(["--model", "unused", "--engine", "hf"])  # apps.bon_eval's limits, as its defaults
    t0 = time.time()
    budgets = (evalplus_time_limits(recs.values(), pool, cache_dir=Path(args.output_dir) / "reference_cache",
                                    timeout_s=bon.plus_timeout_s, memory_mb=bon.plus_memory_mb)
               if mode == "evalplus" else {})
    setup_s = time.time() - t0
    jobs = []
    for c in cands:
        rec = recs[c["task_id"]]
        jobs.append(Job(c["cid"], c["solution"], tuple(rec["test_cases"]), setup=rec.get("test_setup") or "",
                        timeout_s=bon.plus_timeout_s, memory_mb=bon.plus_memory_mb,
                        test_timeouts_s=budgets.get(rec["id"]), stop_at_first_failure=mode == "evalplus",
                        reuse_expected=mode == "evalplus"))
    t0 = time.time()
    results = pool.run_many(jobs)
    wall = time.time() - t0
    out = {}
    for c, r in zip(cands, results):
        nb = recs[c["task_id"]]["n_base"]
        bad = next((f"test {i}: {t.status} {t.reason}".strip() for i, t in enumerate(r.tests)
                    if t.status != "passed"), "")
        out[c["cid"]] = {"base": all(t.status == "passed" for t in r.tests[:nb]), "plus": r.all_passed,
                         "first_failure": bad, "timeout": any(t.status == "timeout" for t in r.tests),
                         "wall_s": r.wall_s, "cpu_s": r.cpu_s}
    return out, wall, setup_s


# ----------------------------------------------------------------------------- comparison
def explain(c: dict, ep_first: dict, ep_again: dict | None, ours: dict, ours_ep: dict | None, tset: str) -> str:
    ep_pass, we_pass = ep_first[tset] == "pass", ours[tset]
    if ep_again is not None and (ep_again[tset] == "pass") != ep_pass:
        return "EvalPlus not reproducible: its verdict changed on a re-run (wall-clock limits on a loaded machine)"
    if not ep_pass and we_pass and ours_ep is not None and ours_ep["timeout"] and not ours_ep[tset]:
        return "time limit: EvalPlus' per-input limit, which the default mode's fixed budget does not apply"
    share = ep_first["cpu_s"] / max(ep_first["wall_s"], 1e-9) if "cpu_s" in ep_first else None
    if (not ep_pass and we_pass and c["kind"] in CORRECT_KINDS and share is not None and share < STARVED_SHARE
            and (ep_again is None or ep_again[tset] != "pass")):
        return (f"undecided: EvalPlus' wall clock on a starved candidate (its process had {share:.0%} of a CPU "
                f"while EvalPlus timed it; a correct-by-construction candidate)")
    if not ep_pass and we_pass and c["task_id"] in EVALPLUS_WRONG:
        if c["kind"].startswith("slow"):  # EvalPlus' own fault hides whether its time limit would fail it too
            return "undecided: " + EVALPLUS_WRONG[c["task_id"]] + ", before any time limit applies"
        return EVALPLUS_WRONG[c["task_id"]]
    if not ep_pass and we_pass and (c["task_id"], c["kind"]) in EVALPLUS_WRONG_FOR:
        return EVALPLUS_WRONG_FOR[c["task_id"], c["kind"]]
    return f"unexplained (ours: {ours['first_failure'] or 'pass'}; EvalPlus: {ep_first[tset]})"


def compare(ds: str, cands: list[dict], ep: dict, ep_again: dict, ours: dict, mode: str, ours_ep: dict | None) -> dict:
    rep = {}
    for tset in ("base", "plus"):
        conf = {"evalplus_pass_ours_pass": 0, "evalplus_pass_ours_fail": 0, "evalplus_fail_ours_pass": 0,
                "evalplus_fail_ours_fail": 0}
        dis = []
        for c in cands:
            e, o = ep[c["cid"]][tset] == "pass", ours[c["cid"]][tset]
            conf[f"evalplus_{'pass' if e else 'fail'}_ours_{'pass' if o else 'fail'}"] += 1
            if e != o:
                dis.append({"cid": c["cid"], "kind": c["kind"], "evalplus": ep[c["cid"]][tset], "ours": o,
                            "why": explain(c, ep[c["cid"]], ep_again.get(c["cid"]), ours[c["cid"]],
                                           ours_ep[c["cid"]] if ours_ep else None, tset)})
        wrong = sum(d["why"].startswith(("EvalPlus wrong", "EvalPlus not reproducible", "undecided")) for d in dis)
        n = len(cands)
        rep[tset] = {"n": n, "agreement": (n - len(dis)) / n, "agreement_where_evalplus_right":
                     (n - len(dis)) / max(1, n - wrong), "confusion": conf, "disagreements": dis}
    return rep


def read_samples(path: str) -> list[dict]:
    """EvalPlus-format samples; apps.bon_eval's rows (``humanevalplus_12`` with its answers as ``samples``)
    become one sample per answer, its code extracted by the rule the test reward uses."""
    from common.extract import extract_code

    out = []
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        s = json.loads(line)
        if "samples" in s:
            name, _, num = s["id"].rpartition("_")
            task = {"humanevalplus": "HumanEval", "mbppplus": "Mbpp", "mbpp": "Mbpp"}[name] + "/" + num
            out += [{"task_id": task, "solution": extract_code(a)} for a in s["samples"]]
        else:
            out.append(s)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="humaneval,mbpp")
    p.add_argument("--limit", type=int, default=0, help="K tasks per dataset, evenly spread (0: all), plus the "
                                                         "tasks EvalPlus gets wrong")
    p.add_argument("--tasks", default="", help="comma-separated task ids (HumanEval/42,...) instead of --limit")
    p.add_argument("--samples", default="", help="JSONL of real samples: EvalPlus' (task_id and solution or "
                                                 "completion) or apps.bon_eval's samples.jsonl (id and samples)")
    p.add_argument("--workers", type=int, default=2, help="parallel slots, for EvalPlus and for us")
    p.add_argument("--modes", default="default,evalplus", help="our modes to compare")
    p.add_argument("--blocks", type=int, default=4, help="EvalPlus and ours take turns on this many blocks")
    p.add_argument("--data_dir", default=os.environ.get("ACECODER_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--evalplus_python", default="/work/venvs/evalplus/bin/python")
    p.add_argument("--output_dir", default="outputs/evalplus_agreement")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from data_prep.benchmarks import load_benchmark
    from data_prep.benchmarks.files import read_jsonl
    from sandbox import SandboxPool

    os.makedirs(args.output_dir, exist_ok=True)
    samples = read_samples(args.samples) if args.samples else []
    report = {"uptime_start": os.popen("uptime").read().strip(), "datasets": {}}
    from apps.bon_eval import parse_args as bon_args

    # apps.bon_eval's value cap: HumanEval+ 15, 100 and 130 have answers of several MiB (1 MiB, the pool's
    # default, made their canonical solutions fail with ValueTooLarge in the full-set run)
    cap = bon_args(["--model", "unused", "--engine", "hf"]).sandbox.value_limit_bytes
    with SandboxPool(workers=args.workers, timeout_s=20.0, memory_mb=4096, program_timeout_s=300.0,
                     value_limit_bytes=cap) as pool:
        for ds in args.datasets.split(","):
            rows = {r["task_id"]: r for r in read_jsonl(Path(args.data_dir) / DATA[ds][0])}
            ids = list(rows)
            if args.tasks:
                ids = [t for t in args.tasks.split(",") if t in rows]
            elif args.limit:
                ids = sorted({ids[i * len(ids) // args.limit] for i in range(args.limit)}
                             | set(EVALPLUS_WRONG) & set(ids), key=list(rows).index)
            ours_recs = {r.id: r.to_dict() for r in load_benchmark(DATA[ds][1], args.data_dir)}
            recs = {}
            for t in ids:
                rec = ours_recs[f"{DATA[ds][1]}_{t.split('/')[1]}"]
                rec["n_base"] = len(dict.fromkeys(json.dumps(x) for x in rows[t]["base_input"]))
                recs[t] = rec
            cands = []
            for t in ids:
                floats = rows[t]["atol"] != 0 or any("_evalplus_check(" in x for x in recs[t]["test_cases"])
                made = candidates(rows[t], ds, floats)
                made += [("sample", s["solution"] if "solution" in s else rows[t]["prompt"] + s["completion"])
                         for s in samples if s["task_id"] == t]
                cands += [{"cid": f"{t}#{j}:{kind}", "task_id": t, "kind": kind, "solution": code}
                          for j, (kind, code) in enumerate(made)]
            print(f"[agreement] {ds}: {len(ids)} tasks, {len(cands)} candidates", file=sys.stderr, flush=True)
            # EvalPlus and our modes take turns block by block, so a change in the machine's load hits both
            modes = args.modes.split(",")
            ep = {"results": {}, "wall_s": 0.0, "setup_s": 0.0}
            ours = {m: {} for m in modes}
            times = {m: [0.0, 0.0] for m in modes}
            for b in range(args.blocks):
                block = cands[b * len(cands) // args.blocks:(b + 1) * len(cands) // args.blocks]
                if not block:
                    continue
                e = run_evalplus(args, ds, block, f"first{b}", ids)
                ep["results"].update(e["results"])
                ep["wall_s"] += e["wall_s"]
                ep["setup_s"] += e["setup_s"]
                for mode in modes:
                    res, wall, setup = run_ours(args, recs, block, mode, pool)
                    ours[mode].update(res)
                    times[mode][0] += wall
                    times[mode][1] += setup
                print(f"[agreement] {ds} block {b + 1}/{args.blocks}: EvalPlus {ep['wall_s']:.0f} s, ours "
                      + ", ".join(f"{m} {t[0]:.0f} s" for m, t in times.items()), file=sys.stderr, flush=True)
            r = {"tasks": len(ids), "candidates": len(cands), "evalplus": {"samples_per_s": len(cands) / ep["wall_s"],
                 "wall_s": ep["wall_s"], "setup_s": ep["setup_s"]}, "ours": {}}
            for mode, (wall, setup) in times.items():
                r["ours"][mode] = {"samples_per_s": len(cands) / wall, "wall_s": wall, "setup_s": setup}
            differ = [c for c in cands if any((ep["results"][c["cid"]][s] == "pass") != o[c["cid"]][s]
                                              for o in ours.values() for s in ("base", "plus"))]
            again = run_evalplus(args, ds, differ, "again", ids)["results"] if differ else {}
            for mode, res in ours.items():
                r["ours"][mode].update(compare(ds, cands, ep["results"], again, res, mode, ours.get("evalplus")))
            r["slowest"] = sorted(([round(ep["results"][c["cid"]]["wall_s"], 2)]
                                   + [round(o[c["cid"]]["wall_s"], 2) for o in ours.values()] + [c["cid"]]
                                   for c in cands), key=lambda x: -max(x[:-1]))[:10]
            r["per_candidate"] = {c["cid"]: {"EvalPlus": ep["results"][c["cid"]], "EvalPlus_again": again.get(c["cid"]),
                                             **{f"ours_{m}": o[c["cid"]] for m, o in ours.items()}} for c in cands}
            report["datasets"][ds] = r
    report["uptime_end"] = os.popen("uptime").read().strip()
    Path(args.output_dir, "report.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return report


def print_report(report: dict) -> None:
    print(f"load at start: {report['uptime_start']}\nload at end:   {report['uptime_end']}")
    for ds, r in report["datasets"].items():
        ep = r["evalplus"]
        print(f"\n{ds}: {r['tasks']} tasks, {r['candidates']} candidates; EvalPlus {ep['samples_per_s']:.2f} samples/s "
              f"({ep['wall_s']:.1f} s; ground truth {ep['setup_s']:.1f} s)")
        print(f"  slowest candidates, wall s (EvalPlus, ours {', '.join(r['ours'])}): {r['slowest']}")
        for mode, o in r["ours"].items():
            print(f"  ours, {mode} mode: {o['samples_per_s']:.2f} samples/s ({o['wall_s']:.1f} s; reference times "
                  f"{o['setup_s']:.1f} s), ratio to EvalPlus {o['samples_per_s'] / ep['samples_per_s']:.2f}x")
            for tset in ("base", "plus"):
                t = o[tset]
                c = t["confusion"]
                print(f"    {tset}: agreement {100 * t['agreement']:.1f}% "
                      f"({100 * t['agreement_where_evalplus_right']:.1f}% "
                      f"where EvalPlus is right); EvalPlus pass/ours pass {c['evalplus_pass_ours_pass']}, pass/fail "
                      f"{c['evalplus_pass_ours_fail']}, fail/pass {c['evalplus_fail_ours_pass']}, fail/fail "
                      f"{c['evalplus_fail_ours_fail']}")
                for d in t["disagreements"]:
                    print(f"      {d['cid']}: EvalPlus {d['evalplus']}, ours {'pass' if d['ours'] else 'fail'} "
                          f"-- {d['why']}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_evalplus_worker":
        evalplus_worker(sys.argv[2], sys.argv[3])
    else:
        main()
