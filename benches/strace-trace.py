#!/usr/bin/env python3
"""Turns `strace -f -y -e status=successful` output of a run into a mutation trace in the format
of PRISTINE_TRACE_MUTATIONS (see src/fs/fault.rs), for examples/replay.rs: the floor from the
system calls themselves, whether or not every mutation of the run goes through src/fs yet.
Only paths under ROOT are kept. Usage: strace-trace.py STRACE_OUT ROOT > TRACE
strace must trace at least: mkdirat symlinkat renameat renameat2 unlinkat fchmod fchmodat
fchown fchownat mknodat ftruncate fsetxattr openat openat2 write fsync (openat/openat2 also
teach it which path an fd number has, for calls through /proc/self/fd/N)."""
import re
import sys

LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (.*)$")
FD = re.compile(r"^(-?\d+|AT_FDCWD)<(.*)>$")


def split_args(s: str) -> list[str]:
    """Top-level comma split that respects quotes, brackets and braces."""
    out, cur, depth, quote, esc = [], [], 0, False, False
    for ch in s:
        if quote:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur).strip())
    return out


def unquote(s: str) -> bytes:
    """strace's C string ("..." with escapes, maybe followed by ...) to bytes."""
    s = s.removesuffix("...")
    if not (s.startswith('"') and s.endswith('"')):
        return s.encode()
    body = s[1:-1]
    return body.encode().decode("unicode_escape").encode("latin-1")


def esc(b: bytes) -> str:
    return "".join(chr(c) if 0x21 <= c < 0x7F and c != 0x5C else f"\\x{c:02x}" for c in b)


def main() -> None:
    src, root = sys.argv[1], sys.argv[2].rstrip("/") + "/"
    fds: dict[tuple[str, str], str] = {}  # (pid, fd number) -> path

    def fdpath(pid: str, a: str) -> str | None:
        m = FD.match(a)
        if not m:
            return None
        if m.group(1) != "AT_FDCWD":
            fds[(pid, m.group(1))] = m.group(2)
        return m.group(2)

    def at(pid: str, d: str, name: str) -> str | None:
        n = unquote(name).decode("latin-1")
        if n.startswith("/proc/self/fd/"):
            return fds.get((pid, n.removeprefix("/proc/self/fd/")))
        if n.startswith("/"):
            return n
        base = fdpath(pid, d)
        if base is None:
            return None
        return base if n == "" else base.rstrip("/") + "/" + n

    out = []
    for line in open(src, encoding="latin-1"):
        m = LINE.match(line.rstrip("\n"))
        if not m:
            continue
        pid, call, args, ret = m.groups()
        a = split_args(args)
        for x in a:
            fdpath(pid, x)
        r = FD.match(ret)
        if r and r.group(1) != "AT_FDCWD":
            fds[(pid, r.group(1))] = r.group(2)
        rec = None
        if call == "mkdirat":
            rec = ("mkdir", at(pid, a[0], a[1]), [a[2].lstrip("0") or "0"])
        elif call == "symlinkat":
            rec = ("symlink", at(pid, a[1], a[2]), [esc(unquote(a[0]))])
        elif call == "openat" and "O_CREAT" in a[2] and r:
            mode = a[3].lstrip("0") if len(a) > 3 else "644"
            rec = ("create", r.group(2), [mode or "0"])
        elif call == "write":
            p = fdpath(pid, a[0])
            if p and p.startswith(root):
                rec = ("write", p, [a[-1]])
        elif call in ("fchmod", "fchown", "ftruncate", "fsync", "fsetxattr"):
            p = fdpath(pid, a[0])
            args_ = {
                "fchmod": lambda: [a[1].lstrip("0") or "0"],
                "fchown": lambda: [a[1], a[2]],
                "ftruncate": lambda: [a[1]],
                "fsync": lambda: [],
                "fsetxattr": lambda: [esc(unquote(a[1])), a[3]],
            }[call]()
            op = {"fchmod": "chmod", "fchown": "chown", "ftruncate": "truncate"}.get(call, call)
            op = "setxattr" if op == "fsetxattr" else op
            rec = (op, p, args_)
        elif call == "fchmodat":
            rec = ("chmod", at(pid, a[0], a[1]), [a[2].lstrip("0") or "0"])
        elif call == "fchownat":
            rec = ("lchown", at(pid, a[0], a[1]), [a[2], a[3]])
        elif call == "unlinkat":
            op = "rmdir" if "AT_REMOVEDIR" in a[2] else "unlink"
            rec = (op, at(pid, a[0], a[1]), [])
        elif call in ("renameat", "renameat2"):
            op = "rename"
            if call == "renameat2" and "RENAME_EXCHANGE" in a[4]:
                op = "exchange"
            elif call == "renameat2" and "RENAME_NOREPLACE" in a[4]:
                op = "rename_noreplace"
            to = at(pid, a[2], a[3])
            rec = (op, at(pid, a[0], a[1]), [esc(to.encode("latin-1"))] if to else None)
        if rec and rec[1] and rec[1].startswith(root) and rec[2] is not None:
            op, p, rest = rec
            out.append("\t".join([op, esc(p.encode("latin-1")), *rest]))
    print("\n".join(out))


if __name__ == "__main__":
    main()
