"""Warm starts for the local engine: a job is a fork of a process that has already imported the
heavy libraries, not a fresh interpreter.

A fresh `python -m algorithm train` spends 5-15 s on these machines importing torch, timm,
Lightning and captum before it does any work, and a pipeline runs a dozen such jobs. The local
engine therefore starts `<this python> -m <component> ...` through multiprocessing's fork server,
which imports those libraries once (never our own packages, whose module-level state must be each
job's own) and forks one process per job. The job still gets a process of its own, with exactly
the environment, working folder, CPUs, standard streams and exit status a fresh interpreter would
have; only the import time is gone. Anything else (the container engines, other programs) starts
with subprocess.Popen as before.
"""

from __future__ import annotations

import atexit
import gc
import io
import os
import runpy
import signal
import subprocess
import sys
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any

# What every component imports at the top: the libraries, not our packages.
PRELOAD = ["numpy", "PIL.Image", "torch", "timm", "pytorch_lightning", "captum.attr",
           "safetensors.torch", "albumentations", "matplotlib.pyplot"]


def start_server() -> None:
    """Start the fork server if it is not running; it imports PRELOAD once, before its first job.
    It is stopped when this process exits (`stop_server`)."""
    forkserver.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    atexit.unregister(stop_server)  # registered once however often it is called
    atexit.register(stop_server)


def stop_server() -> None:
    """Stop the fork server, if it runs, and wait for it to exit. Only a waited-for process's CPU
    time counts as its parent's children's (os.times, getrusage, `time`): the server's and that of
    every job it ran, as with fresh interpreters. Left alone it exits when we do, reaped by init,
    and a pipeline's work looked like another program's load (bench/hardware.py)."""
    forkserver._forkserver._stop()


def python_module(command: list[str]) -> tuple[list[int] | None, str, list[str]] | None:
    """(CPUs, module, arguments) of `[taskset -c CPUS] <this python> -m <module> args...`; None
    for any other command."""
    cpus = None
    if command[:2] == ["taskset", "-c"] and len(command) > 2:
        cpus = [int(c) for c in command[2].split(",")]
        command = command[3:]
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return cpus, command[2], command[3:]
    return None


def popen(command: list[str], env: dict[str, str], cwd: os.PathLike | str,
          stdout: Any = None, stderr: Any = None, text: bool = False):
    """subprocess.Popen(command, ...), started warm when `command` runs a module of this
    Python (`python_module`); the object returned answers the same calls."""
    parsed = python_module(command)
    if parsed is None:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr,
                                text=text)
    return WarmProcess(command, *parsed, env=dict(env), cwd=str(cwd), stdout=stdout,
                       stderr=stderr, text=text)


class _Fd:
    """A file descriptor handed to the forked job (the fork server passes it over its socket)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _received_fd, (reduction.DupFd(self.fd),)


def _received_fd(dup) -> _Fd:
    return _Fd(dup.detach())


class _Launch(popen_forkserver.Popen):
    """The fork server's start of a process, except that the job does not import the parent's
    `__main__` first (multiprocessing would: a script's module-level code, run again in every
    job). Otherwise Popen._launch as in CPython 3.11."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _JobProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _Launch(process_obj)


class WarmProcess:
    """The job's process, with the parts of subprocess.Popen's interface the runner uses."""

    def __init__(self, args: list[str], cpus: list[int] | None, module: str, argv: list[str],
                 env: dict[str, str], cwd: str, stdout: Any, stderr: Any, text: bool):
        self.args = args
        self.stdout = self.stderr = None
        opened: list[int] = []  # descriptors of ours that the child has its own copies of

        def target(stream: Any, name: str) -> _Fd | None:
            if stream is None:
                return None
            if stream == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_WRONLY)
            elif stream == subprocess.PIPE:
                read, fd = os.pipe()
                setattr(self, name, open(read, "r" if text else "rb"))
            elif stream == subprocess.STDOUT:
                return out
            else:
                return _Fd(stream if isinstance(stream, int) else stream.fileno())
            opened.append(fd)
            return _Fd(fd)

        out = target(stdout, "stdout")
        err = target(stderr, "stderr")
        start_server()
        self._process = _JobProcess(target=_run_module, name=f"job {module}",
                                    args=(module, argv, env, cwd, cpus, out, err))
        try:
            self._process.start()
        finally:
            for fd in opened:
                os.close(fd)
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        self.wait(timeout)
        return tuple(s.read() if s is not None else None for s in (self.stdout, self.stderr))

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_module(module: str, argv: list[str], env: dict[str, str], cwd: str,
                cpus: list[int] | None, stdout: _Fd | None, stderr: _Fd | None) -> None:
    """In the forked process: become `python -m module argv...` as a fresh interpreter would be."""
    # What the fork server imported stays shared with it only while nothing writes to it: out of
    # the cyclic collector's reach, whose passes write to every object they track (copying each
    # page that holds one, in the job and in every process it forks in turn)
    gc.freeze()
    for fd, stream, target in ((stdout, sys.stdout, 1), (stderr, sys.stderr, 2)):
        if fd is not None:
            stream.flush()
            os.dup2(fd.fd, target)
    for fd in {f.fd for f in (stdout, stderr) if f is not None}:
        os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    # buffered as a fresh interpreter's streams on these descriptors would be
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdout.reconfigure(line_buffering=os.isatty(1), write_through=unbuffered)
    sys.stderr.reconfigure(line_buffering=True, write_through=unbuffered)
    os.chdir(cwd)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    # torch's thread count was fixed when the fork server imported it; a fresh interpreter would
    # take OMP_NUM_THREADS, else the CPUs it may run on.
    import torch
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))))
    sys.argv = [module, *argv]
    sys.path.insert(0, cwd)  # what `-m` puts first
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # the process ends with os._exit, which skips them
