"""The local engine's warm start: a forked job must look to itself exactly like a fresh
`python -m module` (environment, folder, arguments, CPUs, threads, streams, exit status)."""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from pipelines import warm
from pipelines.jobs import Engine
from pipelines.server import ROOT

PROBE = """
import json, os, sys, time
import torch
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("PROBE"),
                  "cpus": sorted(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
                  "main": __name__}), flush=True)
print("to stderr", file=sys.stderr)
if sys.argv[1] == "wait":
    open("started", "w").close()
    time.sleep(600)
if sys.argv[1] == "burn":  # two seconds of CPU time, however busy the machine is
    start = time.process_time()
    while time.process_time() - start < 2:
        pass
    sys.exit(0)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def probe(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    return tmp_path


def test_a_warm_job_is_a_fresh_interpreter_to_itself(probe):
    cpu = min(os.sched_getaffinity(0))
    log = probe / "log.txt"
    without_threads = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with open(log, "w") as out:
        proc = warm.popen(["taskset", "-c", str(cpu), sys.executable, "-m", "probe", "3", "x y"],
                          env={**without_threads, "PROBE": "yes"}, cwd=probe, stdout=out,
                          stderr=subprocess.STDOUT)
    assert isinstance(proc, warm.WarmProcess)
    assert proc.wait(timeout=300) == 3
    first, second = log.read_text().splitlines()
    assert second == "to stderr"
    seen = json.loads(first)
    assert seen == {"argv": ["3", "x y"], "cwd": str(probe), "env": "yes", "cpus": [cpu],
                    "threads": 1, "main": "__main__"}


def test_a_warm_job_answers_pipes_and_signals_as_popen_does(probe):
    proc = warm.popen([sys.executable, "-m", "probe", "wait"], env=dict(os.environ), cwd=probe,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (probe / "started").exists():  # the job says it is running
        assert proc.poll() is None, proc.communicate()
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.1)
    proc.terminate()
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert proc.communicate()[1] == "to stderr\n"


def test_a_script_without_a_main_guard_is_not_run_again_by_its_jobs(probe):
    """multiprocessing would import the parent's __main__ in each job: a script's own code."""
    script = probe / "script.py"
    script.write_text(textwrap.dedent(f"""
        import os, subprocess, sys
        from pipelines import warm
        print("script ran", flush=True)
        proc = warm.popen([sys.executable, "-m", "probe", "0"], env=dict(os.environ),
                          cwd={str(probe)!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sys.exit(proc.wait())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=probe, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "script ran\n"


def test_the_cpu_time_of_warm_jobs_counts_as_their_starters_children(probe):
    """As a fresh interpreter's would, once the starter exits: bench/hardware.py's meter of other
    programs' load subtracts its own children's CPU time, so a pipeline's jobs must be in it."""
    script = probe / "script.py"
    script.write_text(textwrap.dedent(f"""
        import os, subprocess, sys
        from pipelines import warm
        proc = warm.popen([sys.executable, "-m", "probe", "burn"], env=dict(os.environ),
                          cwd={str(probe)!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.wait() == 0
        own = os.times()
        print(own.user + own.system)
    """))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=probe, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    script_itself = float(done.stdout)
    counted = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert counted - script_itself >= 2.0, (counted, script_itself)


def test_only_the_local_engine_starts_warm_and_any_other_command_is_a_subprocess(probe):
    assert Engine("local").popen is warm.popen
    assert Engine("local", warm=False).popen is subprocess.Popen
    assert Engine("podman").popen is subprocess.Popen
    other = warm.popen(["true"], env=dict(os.environ), cwd=probe)
    assert isinstance(other, subprocess.Popen) and other.wait() == 0
