#!/usr/bin/env python3
"""Runs commands one after the other (output discarded) and prints "wall_ms cpu_ms" with
microsecond resolution: wall from the first spawn to the last exit, CPU = user + system time
of the commands (their rusage from wait4). Commands are separated by a lone ";".
A command that fails is still counted (the benches compare work, not exit codes).
With --syncfs DIR first, one syncfs(2) of DIR's file system follows the last command inside
the wall time (equal durability for tools that do not flush, or flush differently); its CPU
time is this process's own and is added too.
Usage: timed.py [--syncfs DIR] CMD [ARG...] [";" CMD [ARG...]]..."""
import ctypes
import os
import resource
import sys
import time

LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any clock starts


def syncfs(path: str) -> float:
    """syncfs(2) of the file system holding path; returns the CPU seconds it took."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if LIBC.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    args = sys.argv[1:]
    sync_dir = None
    if args[:1] == ["--syncfs"]:
        sync_dir, args = args[1], args[2:]
    cmds, cur = [], []
    for a in args:
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
    if sync_dir is not None:
        cpu += syncfs(sync_dir)
    wall = time.perf_counter() - start
    print(f"{wall * 1000:.3f} {cpu * 1000:.3f}")


if __name__ == "__main__":
    main()
