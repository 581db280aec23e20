"""SIGTERM as Ctrl-C while a driver runs (autotune.executors.sigterm), and the private Ray function it
relies on: these fail when Ray stops installing its handler that way, or renames the function."""

from __future__ import annotations

import subprocess
import sys

FRESH_PROCESS = r'''
import importlib, signal
import ray
from autotune.executors.sigterm import RAY_FUNCTION, RAY_MODULE, sigterm_as_interrupt

module = importlib.import_module(RAY_MODULE)
original = getattr(module, RAY_FUNCTION)  # AttributeError: Ray renamed it
calls = []
setattr(module, RAY_FUNCTION, lambda h: (calls.append(h), original(h)))
before = signal.getsignal(signal.SIGTERM)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
assert calls, "ray.init no longer installs its SIGTERM handler through " + RAY_FUNCTION
assert signal.getsignal(signal.SIGTERM) is not before  # Ray's own handler: a stop would read as a failure
ray.shutdown()
setattr(module, RAY_FUNCTION, original)

signal.signal(signal.SIGTERM, signal.SIG_DFL)
with sigterm_as_interrupt():
    ours = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    assert signal.getsignal(signal.SIGTERM) is ours, "ray.init replaced the handler"
    try:
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")
    except KeyboardInterrupt:
        pass
    signal.raise_signal(signal.SIGTERM)  # a second one is ignored while the driver records its trials
    ray.shutdown()
assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and getattr(module, RAY_FUNCTION) is original
print("ok")
'''


def test_ray_init_keeps_our_sigterm_handler_and_sigterm_interrupts_once() -> None:
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
