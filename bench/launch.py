"""Run a command and write ITS OWN rusage (peak RSS, CPU) and wall time as JSON to a file.

    python -S bench/launch.py OUT.json COMMAND [ARG...]
    python -S bench/launch.py --batch OUT.json COMMANDS.json   (a list of argv, run one after another)

Why a launcher: Linux carries the parent's memory high-water mark into a child that was
vfork()ed and exec()ed (the kernel records the old mm's peak at exec), so a child started
straight from the benchmark process would report the benchmark's own peak RSS. Started from this
small process instead, a child's ``ru_maxrss`` is its own (floor: this launcher's few MiB).
Exits with the command's exit status; stdin/stdout/stderr are passed through.
"""

import json
import os
import sys
import time


def run(argv: list) -> dict:
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {
        "wall": time.perf_counter() - started,
        "returncode": code,
        "maxrss_kib": usage.ru_maxrss,
        "utime": usage.ru_utime,
        "stime": usage.ru_stime,
    }


def main() -> int:
    if sys.argv[1] == "--batch":
        out = sys.argv[2]
        with open(sys.argv[3]) as f:
            commands = json.load(f)
        results = []
        for argv in commands:  # like a shell loop: stop at the first failure
            results.append(run(argv))
            if results[-1]["returncode"] != 0:
                break
    else:
        out, results = sys.argv[1], [run(sys.argv[2:])]
    with open(out, "w") as f:
        json.dump(results, f)
    code = results[-1]["returncode"]
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
