"""EvalPlus 0.3.1's verdict on a task depends on the size of the process it forks the candidate from.

``evalplus.evaluate`` checks each sample in a ``ProcessPoolExecutor`` worker, which forks one process per
sample (``untrusted_check``) and caps that process's address space at 4 GiB (``RLIMIT_AS``). The fork
inherits the worker's address space, so after the worker has unpickled a task with huge expected outputs
(MBPP+ 255: gigabytes of tuples), the cap leaves little room, and a later, correct sample of another task
fails where its own memory use rises. In our 378-task agreement run, EvalPlus failed MBPP+ 392's canonical
solution in both of its passes this way. This script shows the mechanism directly: Mbpp/392's canonical
solution, checked by EvalPlus' own ``check_correctness`` from this process while it holds an unused
buffer of growing size.

Runs under EvalPlus' interpreter (MBPP_OVERRIDE_PATH names the local MbppPlus.jsonl.gz):

    MBPP_OVERRIDE_PATH=../shared/data/MbppPlus.jsonl.gz /work/venvs/evalplus/bin/python \
        benchmarks/evalplus_fork_memory.py [--task Mbpp/392] [--held_mb 0,2500,3900,6000]
"""
from __future__ import annotations

import argparse


def vm_size_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    return -1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="Mbpp/392")
    p.add_argument("--held_mb", default="0,2500,3900,6000", help="sizes of the buffer held while checking, in MiB")
    args = p.parse_args()
    from evalplus.data import get_mbpp_plus
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import check_correctness, get_groundtruth

    problem = get_mbpp_plus()[args.task]
    expected = get_groundtruth({args.task: problem}, "fork-memory-" + args.task.replace("/", "_"),
                               MBPP_OUTPUT_NOT_NONE_TASKS)[args.task]
    solution = problem["prompt"] + problem["canonical_solution"]
    print("held MiB | this process's VmSize MiB | base | plus | first failing plus inputs")
    for mb in (int(x) for x in args.held_mb.split(",")):
        held = bytearray(mb << 20)  # zero pages: address space, almost no resident memory
        r = check_correctness("mbpp", 0, problem, solution, expected, False, True, "canonical")
        failing = [i for i, ok in enumerate(r["plus"][1]) if not ok][:5]
        print(f"{mb} | {vm_size_mb()} | {r['base'][0]} | {r['plus'][0]} | {failing}", flush=True)
        del held


if __name__ == "__main__":
    main()
