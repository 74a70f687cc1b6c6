"""A seccomp filter for the re-verification child: no new programs, no new
processes, no signals or tracing aimed at other processes.

The child runs a learner's definitions. Whatever they do in Python, the
kernel refuses, for this process and everything it could become:

* ``execve`` / ``execveat``: no fresh interpreter without the audit hook
  (``_posixsubprocess.fork_exec`` raises no audit event);
* ``fork`` / ``vfork`` / ``clone`` without ``CLONE_THREAD`` / ``clone3``
  (answered ENOSYS so that threads fall back to ``clone``): no process
  outlives the child or lingers for the next one;
* ``kill`` / ``tgkill`` aimed at any process but the child itself,
  ``tkill``, ``pidfd_send_signal``, ``ptrace``, ``process_vm_readv`` /
  ``process_vm_writev``: no harm to the zygote or a sibling.

The filter is a classic BPF program installed with ``prctl`` through ctypes
(the harness does this before any learner code runs; ctypes is refused to
learner code by the audit hook). Only x86-64 and aarch64 are known;
:func:`install` raises :class:`Unsupported` elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

# BPF instruction classes and fields (linux/filter.h).
_LD_W_ABS = 0x20          # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15             # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35             # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45            # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06             # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_KILL = 0x80000000    # SECCOMP_RET_KILL_PROCESS
_RET_ERRNO = 0x00050000   # SECCOMP_RET_ERRNO | errno
_EPERM, _ENOSYS = 1, 38

_CLONE_THREAD = 0x00010000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24


class Unsupported(RuntimeError):
    """No filter is known for this machine's architecture."""


#: (audit arch, syscall numbers) per machine.
_ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435,
        "kill": 62, "tkill": 200, "tgkill": 234, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "pidfd_send_signal": 424}),
    "aarch64": (0xC00000B7, {
        "clone": 220, "execve": 221, "execveat": 281, "clone3": 435, "kill": 129,
        "tkill": 130, "tgkill": 131, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "pidfd_send_signal": 424}),
}


def _insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(pid: int, machine: str | None = None) -> bytes:
    """The BPF program for a process whose pid is ``pid`` on ``machine``."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise Unsupported(f"no seccomp filter for {machine}")
    arch, nr = _ARCHES[machine]
    deny = _RET_ERRNO | _EPERM
    rules: list[tuple[int, list[bytes]]] = []   # (syscall, instructions run when it matches)
    for name in ("execve", "execveat", "fork", "vfork", "tkill", "pidfd_send_signal",
                 "ptrace", "process_vm_readv", "process_vm_writev"):
        if name in nr:
            rules.append((nr[name], [_insn(_RET_K, k=deny)]))
    rules.append((nr["clone3"], [_insn(_RET_K, k=_RET_ERRNO | _ENOSYS)]))
    # clone: threads only (flags in the first argument on both machines)
    rules.append((nr["clone"], [_insn(_LD_W_ABS, k=_ARG0),
                                _insn(_JSET_K, 0, 1, _CLONE_THREAD),
                                _insn(_RET_K, k=_RET_ALLOW),
                                _insn(_RET_K, k=deny)]))
    # kill(pid, sig): only this process (not 0: the group holds the zygote)
    rules.append((nr["kill"], [_insn(_LD_W_ABS, k=_ARG0),
                               _insn(_JEQ_K, 1, 0, pid),
                               _insn(_RET_K, k=deny),
                               _insn(_RET_K, k=_RET_ALLOW)]))
    # tgkill(tgid, tid, sig): only threads of this process
    rules.append((nr["tgkill"], [_insn(_LD_W_ABS, k=_ARG0),
                                 _insn(_JEQ_K, 1, 0, pid),
                                 _insn(_RET_K, k=deny),
                                 _insn(_RET_K, k=_RET_ALLOW)]))
    code = [_insn(_LD_W_ABS, k=_ARCH), _insn(_JEQ_K, 1, 0, arch), _insn(_RET_K, k=_RET_KILL),
            _insn(_LD_W_ABS, k=_NR)]
    if machine == "x86_64":           # the x32 ABI numbers the same calls differently
        code += [_insn(_JGE_K, 0, 1, 0x40000000), _insn(_RET_K, k=deny)]
    for number, body in rules:
        # if nr != number: skip this rule's body
        code += [_insn(_JEQ_K, 0, len(body), number), *body,
                 _insn(_LD_W_ABS, k=_NR)]     # bodies may load an argument: reload nr
    code.append(_insn(_RET_K, k=_RET_ALLOW))
    return b"".join(code)


def install(pid: int | None = None) -> None:
    """Install the filter on the calling thread (and what it starts); for good."""
    prog = program(os.getpid() if pid is None else pid)
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(prog, len(prog))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
