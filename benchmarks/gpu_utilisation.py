"""GPU busy fraction: how much of one trial's exclusive GPU throughput a whole search keeps.

    python benchmarks/gpu_utilisation.py            # 16 trials per setting (the committed results)
    python benchmarks/gpu_utilisation.py --quick    # 4 short trials per setting; exits 0 without a GPU

Workload: ResNet-18 (torchvision, random init, 10 classes) on synthetic 224 x 224 images already on
the GPU, SGD, bf16 autocast, channels-last: ``--steps`` (150) steps at batch ``--batch`` (128) per
trial, learning rate and momentum searched (they change nothing about the cost).

1. Exclusive throughput: one trial, in this process, after a warm-up trial: images per second.
2. Searches of ``--trials`` (16) trials through ``autotune.run(executor="ray")`` (random sampler,
   ``full`` evaluator, 2 rounds), for each setting:
     * ``gpus_per_trial`` 1 (one trial at a time) or 0.25 (four trials share the GPU);
     * worker reuse (autotune's executor: a worker process runs trial after trial, so Python, torch
       and the CUDA context start once per worker) or ``fresh`` (this benchmark's objective runs each
       trial in a new Python process, as a launcher without reuse does: start-up and CUDA set-up are
       paid by every trial).
   Fraction = images trained per wall second over the whole search (from the call to its return,
   worker start-up included, Ray already running) / the exclusive throughput.  NVML utilisation
   (``nvidia-ml-py``) is sampled every 0.1 s over the same interval.

Reference (from the issue): plain Ray Tune on an H100 reached 0.11 of exclusive throughput without
worker reuse (10 % NVML) and 0.70 with reuse and quarter-GPU trials (68 % NVML).  Target: 0.95.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402  (not "_common": trials/_common.py owns that name)

NO_GPU = "no CUDA GPU found: gpu_utilisation.py needs an NVIDIA GPU and measured nothing"
COLUMNS = ["setting", "schedule", "gpus_per_trial", "reuse", "trials", "steps", "batch", "images", "wall_s", "images_per_s",
           "exclusive_images_per_s", "fraction", "nvml_util_mean", "trial_images_per_s_median", "status"]


def train_resnet(steps: int, batch: int, lr: float = 0.05, momentum: float = 0.9) -> dict[str, float]:
    """Train ResNet-18 on synthetic data for ``steps`` steps; images per second of the training loop."""
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = torchvision.models.resnet18(num_classes=10).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    x = torch.randn(batch, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = torch.zeros((), device=dev)
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"images_per_s": steps * batch / seconds, "seconds": seconds, "loss": float(loss)}


def make_objective(steps: int, batch: int, fresh: bool) -> Any:
    script = str(Path(__file__).resolve())

    def objective(config: dict[str, Any], trial: Any) -> float:
        if fresh:  # a new Python process per trial: imports and CUDA context paid every time
            arg = json.dumps({"steps": steps, "batch": batch, "lr": config["lr"], "momentum": config["momentum"]})
            done = subprocess.run([sys.executable, script, "--_one-trial", arg], capture_output=True, text=True,
                                  check=True)
            out = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            out = train_resnet(steps, batch, config["lr"], config["momentum"])
        trial.report({"images_per_s": out["images_per_s"]})
        return out["images_per_s"]

    return objective


class NvmlSampler:
    """Mean GPU utilisation (%) from NVML, sampled every ``period`` seconds in a thread."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.samples, self._stop = period, [], threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - nvidia-ml-py missing or no driver: no NVML numbers
            self._nvml = None

    def __enter__(self) -> NvmlSampler:
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            time.sleep(self.period)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


def search(gpus: float, fresh: bool, trials: int, steps: int, batch: int, exclusive: float, work: Path,
           schedule: str = "async") -> dict[str, Any]:
    import autotune

    space = {"params": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
                        "momentum": {"type": "float", "low": 0.8, "high": 0.95}}}
    rounds = 2
    name = f"g{gpus:g}-{'fresh' if fresh else 'reuse'}-{schedule}"
    with NvmlSampler() as nvml:
        t0 = time.perf_counter()
        result = autotune.run(make_objective(steps, batch, fresh), space=space, sampler="random", evaluator="full",
                              rounds=rounds, popsize=trials // rounds, metric="images_per_s", mode="max", seed=0,
                              output=work, name=name, executor="ray", resources={"cpu": 2, "gpu": gpus},
                              schedule=schedule)
        wall = time.perf_counter() - t0
    frame = result.trials
    done = int((frame["status"] == "completed").sum())
    images = done * steps * batch
    return {"setting": name, "schedule": schedule, "gpus_per_trial": gpus, "reuse": "fresh process per trial" if fresh else "worker reuse",
            "trials": done, "steps": steps, "batch": batch, "images": images, "wall_s": wall,
            "images_per_s": images / wall, "exclusive_images_per_s": exclusive, "fraction": images / wall / exclusive,
            "nvml_util_mean": nvml.mean, "trial_images_per_s_median": float(frame["value"].median()), "status": "ok"}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--_one-trial":  # the "fresh" child process
        a = json.loads(sys.argv[2])
        print(json.dumps(train_resnet(a["steps"], a["batch"], a["lr"], a["momentum"])))
        return 0
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, help="trials per search (default 16; --quick 4)")
    p.add_argument("--steps", type=int, help="steps per trial (default 150; --quick 30)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--gpus", default="1,0.25", help="gpus_per_trial values, comma-separated")
    p.add_argument("--schedules", default="async,rounds", help="schedules to measure, comma-separated")
    args = p.parse_args(argv)
    out = _bench.out_dir(args)
    try:
        import torch

        have_gpu = torch.cuda.is_available()
    except ImportError:
        have_gpu = False
    if not have_gpu:
        print(NO_GPU)
        _bench.write_csv(out / "gpu_utilisation.csv", [{"status": NO_GPU}], COLUMNS)
        return 0
    import logging

    import ray
    import torch

    trials = args.trials or (4 if args.quick else 16)
    steps = args.steps or (30 if args.quick else 150)
    train_resnet(min(steps, 30), args.batch)  # warm-up: cuDNN autotuning, allocator
    exclusive = train_resnet(steps, args.batch)["images_per_s"]
    print(f"exclusive: {exclusive:.0f} images/s ({torch.cuda.get_device_name(0)})", flush=True)
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="autotune-gpu-"))
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    rows = []
    try:
        for schedule in args.schedules.split(","):
            for fresh in (False, True):
                for gpus in (float(g) for g in args.gpus.split(",")):
                    row = search(gpus, fresh, trials, steps, args.batch, exclusive, work, schedule)
                    rows.append(row)
                    print(f"{row['setting']}: {row['fraction']:.2f} of exclusive, NVML {row['nvml_util_mean']:.0f}%",
                          flush=True)
    finally:
        ray.shutdown()
    _bench.write_csv(out / "gpu_utilisation.csv", rows, COLUMNS)
    _bench.write_machine(out / "gpu_utilisation_machine.csv", {"gpu": torch.cuda.get_device_name(0),
                                                               "torch_cuda": torch.version.cuda})
    print(_bench.table([(r["setting"], r["trials"], f"{r['wall_s']:.1f}", f"{r['images_per_s']:.0f}",
                         f"{r['fraction']:.2f}", f"{r['nvml_util_mean']:.0f}") for r in rows],
                       ["setting", "trials", "wall s", "images/s", "fraction of exclusive", "NVML %"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
