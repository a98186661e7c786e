#!/usr/bin/env python3
"""Runs commands one after the other (output discarded) and prints "wall_ms cpu_ms" with
microsecond resolution: wall from the first spawn to the last exit, CPU = user + system time
of the commands (their rusage from wait4). Commands are separated by a lone ";".
A command that fails is still counted (the benches compare work, not exit codes).
Usage: timed.py CMD [ARG...] [";" CMD [ARG...]]..."""
import os
import sys
import time


def main() -> None:
    cmds, cur = [], []
    for a in sys.argv[1:]:
        if a == ";":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    if cur:
        cmds.append(cur)
    devnull = os.open(os.devnull, os.O_WRONLY)
    cpu = 0.0
    start = time.perf_counter()
    for argv in cmds:
        # posix_spawn (vfork + exec): forking the interpreter would cost more than pristine.
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
        )
        _, _, ru = os.wait4(pid, 0)
        cpu += ru.ru_utime + ru.ru_stime
    wall = time.perf_counter() - start
    print(f"{wall * 1000:.3f} {cpu * 1000:.3f}")


if __name__ == "__main__":
    main()
