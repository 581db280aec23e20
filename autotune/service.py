"""The search service: searches run as Ray Jobs on the cluster, with no terminal attached.

``autotune submit`` starts ``autotune run ...`` as a Ray Job through Ray's job submission API (the
head's dashboard port, ``http://HEAD:8265``), so the driver lives on the cluster and outlives the
laptop that submitted it.  ``jobs``, ``logs``, ``stop`` and ``resume --address http://...`` find a
search's job by its run name, which every autotune job carries in its metadata.  ``stop`` is Ray's
``stop_job``: SIGTERM to the driver, which ``run`` and ``resume`` turn into the Ctrl-C path (running
trials recorded as stopped, the run interrupted and resumable); Ray sends SIGKILL after
``RAY_JOB_STOP_WAIT_TIME_S`` (3 s unless the head's environment sets more).

Where the files travel:

* ``--upload DIR`` (default: the current folder): DIR (space file, trial file, small data) goes to the
  cluster as the job's runtime_env ``working_dir``, at most ``--upload-limit`` MiB.  The job first
  copies it to ``OUTPUT/.autotune-sources/NAME`` on the cluster's storage and runs from there, so the
  trial file is still there when the run is resumed later, by a new job, from anywhere.
* ``--cluster-dir DIR``: the project is already on storage the cluster shares; nothing is uploaded and
  the job runs from DIR.

Either way the run folder (``--output``, an absolute path) must be on storage the cluster keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import shlex
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError
from .executors.ray_auth import enable_token_auth

#: metadata keys of an autotune job (Ray job metadata is a str -> str map)
META_RUN = "autotune_run"
META_ACTION = "autotune_action"
META_RUN_DIR = "autotune_run_dir"
META_STORAGE = "autotune_storage"
META_CLIENT = "autotune_client"
SOURCES = ".autotune-sources"
DEFAULT_UPLOAD_LIMIT_MB = 100.0
UPLOAD_EXCLUDES = [".git", "__pycache__", "*.pyc", ".venv", "venv", "node_modules", ".mypy_cache",
                   ".pytest_cache"]
ACTIVE = ("PENDING", "RUNNING")
STORAGE_ENV = "AUTOTUNE_JOB_STORAGE"  # a storage URL given to a job through its environment


def is_job_address(address: str | None) -> bool:
    """``http://HEAD:8265`` (the job server) rather than a Ray address (``HEAD:6379``, ``ray://...``)."""
    return bool(address) and str(address).lower().startswith(("http://", "https://"))


def client_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "?"
    return f"cli {user}@{socket.gethostname()}"


# -- the job server --------------------------------------------------------------------------------


def job_client(address: str | None) -> Any:
    """A JobSubmissionClient for ``http://HEAD:8265`` (or RAY_API_SERVER_ADDRESS / RAY_ADDRESS)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("AUTOTUNE_JOB_ADDRESS")
    if not address:
        raise ConfigError("no job server: pass --address http://HEAD:8265 (the Ray head's dashboard port)")
    if not is_job_address(address):
        raise ConfigError(f"--address {address!r}: searches are submitted to the head's job server, "
                          f"http://HEAD:8265, not to a Ray address")
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise ConfigError(f"Ray's job submission client is not available: {e}") from None
    enable_token_auth()
    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address  # Ray lets RAY_ADDRESS override the address given
    try:
        return JobSubmissionClient(address)
    except RuntimeError as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "ray[default]" in text:
            raise ConfigError("submitting searches needs Ray's `default` extra: "
                              "pip install 'autotune[service]'") from None
        raise ConfigError(f"cannot reach the job server at {address}: {text}") from None
    except Exception as e:  # noqa: BLE001 - connection refused, bad URL, auth
        hint = (" (the cluster authenticates by token: set RAY_AUTH_TOKEN, or copy the head's ~/.ray/auth_token "
                "here)") if "auth" in type(e).__name__.lower() else ""
        raise ConfigError(f"cannot reach the job server at {address}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}{hint}") from None
    finally:
        if saved is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved


@dataclass
class Job:
    job_id: str
    run: str
    action: str
    status: str
    run_dir: str
    storage: str
    client: str
    entrypoint: str
    start_time: float | None
    end_time: float | None
    message: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _status(s: Any) -> str:
    return str(getattr(s, "value", s))


def _job(d: Any) -> Job | None:
    meta = getattr(d, "metadata", None) or {}
    if META_RUN not in meta:
        return None
    start = getattr(d, "start_time", None)
    end = getattr(d, "end_time", None)
    return Job(job_id=str(getattr(d, "submission_id", None) or getattr(d, "job_id", "")), run=meta[META_RUN],
               action=meta.get(META_ACTION, "run"), status=_status(getattr(d, "status", "")),
               run_dir=meta.get(META_RUN_DIR, ""), storage=meta.get(META_STORAGE, ""),
               client=meta.get(META_CLIENT, ""), entrypoint=str(getattr(d, "entrypoint", "")),
               start_time=start / 1000 if start else None, end_time=end / 1000 if end else None,
               message=str(getattr(d, "message", "") or ""))


def list_jobs(client: Any) -> list[Job]:
    """Every autotune job the job server knows, oldest first."""
    jobs = [j for j in (_job(d) for d in client.list_jobs()) if j is not None]
    jobs.sort(key=lambda j: (j.start_time or 0.0, j.job_id))
    return jobs


def find_job(client: Any, name: str, *, active: bool = False) -> Job:
    """The newest job of run ``name`` (or the job whose id is ``name``)."""
    jobs = list_jobs(client)
    mine = [j for j in jobs if j.job_id == name] or [j for j in jobs if j.run == name]
    if active:
        mine = [j for j in mine if j.active]
    if not mine:
        known = sorted({j.run for j in jobs})
        what = "running job" if active else "job"
        raise ConfigError(f"no {what} for a run named {name!r} on this job server "
                          f"(submitted runs: {', '.join(known[-20:]) or 'none'}; see autotune jobs)")
    return mine[-1]


def _job_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:60].strip("-") or "run"
    return f"autotune-{slug}-{uuid.uuid4().hex[:8]}"


def _submit(client: Any, entrypoint: str, run: str, action: str, run_dir: str, storage: str | None,
            client_label: str, runtime_env: dict[str, Any] | None) -> str:
    from .store import redact_url

    meta = {META_RUN: run, META_ACTION: action, META_RUN_DIR: run_dir,
            META_STORAGE: redact_url(storage) if storage else "", META_CLIENT: client_label[:200]}
    try:
        return str(client.submit_job(entrypoint=entrypoint, submission_id=_job_id(run), runtime_env=runtime_env,
                                     metadata=meta))
    except Exception as e:  # noqa: BLE001 - the server's answer, one line
        raise ConfigError(f"the job server refused the search: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from None


def _storage_env(storage: str | None) -> tuple[list[str], dict[str, str]]:
    """``--storage`` for a job's command line; a URL with a password travels in the environment."""
    if not storage:
        return [], {}
    from .store import redact_url

    if redact_url(storage) != storage:
        return ["--storage", f'"${STORAGE_ENV}"'], {STORAGE_ENV: storage}
    return ["--storage", shlex.quote(storage)], {}


# -- submit ----------------------------------------------------------------------------------------
def folder_size(root: Path, limit: int) -> int:
    """Bytes under ``root`` (the upload's excludes left out), stopping early past ``limit``."""
    total = 0
    skip = {e for e in UPLOAD_EXCLUDES if "*" not in e}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for f in filenames:
            if f.endswith(".pyc"):
                continue
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
            if total > limit:
                return total
    return total


def _inside(path: str, root: Path, what: str) -> str:
    """``path`` (as the user typed it, relative to the current folder) relative to the upload ``root``."""
    p = Path(path)
    full = (p if p.is_absolute() else Path.cwd() / p).resolve()
    try:
        return str(full.relative_to(root))
    except ValueError:
        raise ConfigError(f"the {what} {path} is not inside the uploaded folder {root}: run submit from the "
                          f"project folder, or pass --upload DIR holding it") from None


def _trial_in_upload(trial: str, root: Path) -> str:
    """A file trial (``x.py``, ``x.py:fn``) relative to the upload; a module trial as it is."""
    file_part, sep, fn = trial.partition(":")
    if file_part.endswith(".py"):
        return _inside(file_part, root, "trial file") + (sep + fn if sep else "")
    return trial


def submit(
    address: str | None,
    run_argv: Sequence[str],
    *,
    name: str,
    output: str,
    space: str,
    trial: str | None,
    storage: str | None = None,
    upload: str | None = None,
    cluster_dir: str | None = None,
    upload_limit_mb: float = DEFAULT_UPLOAD_LIMIT_MB,
    script_args: Sequence[str] = (),
    client_label: str | None = None,
) -> tuple[str, str]:
    """Submit ``autotune run`` as a Ray Job; returns (run name, job id).

    ``run_argv``: the run's flags other than the trial, --space, --output, --name and --storage."""
    if not output or not Path(output).is_absolute():
        raise ConfigError(f"submit needs --output: an absolute path on storage the cluster keeps (e.g. --output "
                          f"/shared/runs), since the search runs there, not here (got {output or 'none'})")
    if upload is not None and cluster_dir is not None:
        raise ConfigError("pass either --upload DIR or --cluster-dir DIR, not both")
    run_dir = str(Path(output) / name)
    storage_args, env = _storage_env(storage)
    runtime_env: dict[str, Any] = {}
    if cluster_dir is not None:
        if not Path(cluster_dir).is_absolute():
            raise ConfigError(f"--cluster-dir must be an absolute path on the cluster, got {cluster_dir}")
        space_arg, trial_arg = space, trial
        prefix = f"cd {shlex.quote(cluster_dir)} && "
    else:
        root = Path(upload or ".").resolve()
        if not root.is_dir():
            raise ConfigError(f"--upload {upload}: no such folder")
        if not (Path(space) if Path(space).is_absolute() else Path.cwd() / space).is_file():
            raise ConfigError(f"no space file {space}")
        space_arg = _inside(space, root, "space file")
        trial_arg = _trial_in_upload(trial, root) if trial else None
        limit = int(upload_limit_mb * 1024 * 1024)
        size = folder_size(root, limit)
        if size > limit:
            raise ConfigError(
                f"the folder to upload, {root}, holds more than {upload_limit_mb:g} MiB ({size / 2**20:.0f} MiB "
                f"counted so far): put large data and models on storage the cluster shares and read them from "
                f"there, upload a smaller folder with --upload DIR, run from a folder already on the cluster "
                f"with --cluster-dir DIR, or raise --upload-limit")
        runtime_env["working_dir"] = str(root)
        runtime_env["excludes"] = list(UPLOAD_EXCLUDES)
        q = shlex.quote(str(Path(output) / SOURCES / name))
        # keep the uploaded files beside the runs, so that a later resume (a new job) still finds the trial
        prefix = f"mkdir -p {q} && cp -R . {q}/ && cd {q} && "
    argv = ["autotune", "run", *([shlex.quote(trial_arg)] if trial_arg else []), "--space", shlex.quote(space_arg),
            "--output", shlex.quote(output), "--name", shlex.quote(name), *storage_args,
            *(shlex.quote(a) for a in run_argv)]
    if script_args:
        argv += ["--", *(shlex.quote(a) for a in script_args)]
    entrypoint = prefix + "exec " + " ".join(argv)
    if env:
        runtime_env["env_vars"] = env
    client = job_client(address)
    job_id = _submit(client, entrypoint, name, "run", run_dir, storage, client_label or client_name(),
                     runtime_env or None)
    return name, job_id


def submit_resume(client: Any, run: str, run_dir: str, storage: str | None, client_label: str) -> str:
    """Submit ``autotune resume RUN_DIR`` as a Ray Job; returns the job id."""
    storage_args, env = _storage_env(storage)
    entrypoint = " ".join(["exec autotune resume", shlex.quote(run_dir), *storage_args])
    return _submit(client, entrypoint, run, "resume", run_dir, storage, client_label,
                   {"env_vars": env} if env else None)


def submit_new(client: Any, *, workdir: str, space: str, output: str, name: str, trial: str | None,
               options: Sequence[str], storage: str | None, client_label: str) -> str:
    """Submit ``autotune run`` of a space file already on the cluster (the dashboard's form)."""
    storage_args, env = _storage_env(storage)
    argv = ["autotune", "run", *([shlex.quote(trial)] if trial else []), "--space", shlex.quote(space),
            "--output", shlex.quote(output), "--name", shlex.quote(name), *storage_args,
            *(shlex.quote(o) for o in options)]
    entrypoint = f"cd {shlex.quote(workdir)} && exec " + " ".join(argv)
    return _submit(client, entrypoint, name, "run", str(Path(output) / name), storage, client_label,
                   {"env_vars": env} if env else None)


def resume_remote(address: str | None, name_or_dir: str, storage: str | None = None) -> tuple[str, str]:
    """``autotune resume NAME --address http://...``: the run's folder from its last job, resumed as a new
    job.  Returns (run name, job id)."""
    client = job_client(address)
    if "/" in name_or_dir:
        run_dir = name_or_dir.rstrip("/")
        run = Path(run_dir).name
        with contextlib.suppress(ConfigError):
            storage = storage or _usable_storage(find_job(client, run).storage)
    else:
        last = find_job(client, name_or_dir)
        if last.active:
            raise ConfigError(f"run {last.run!r} is still running as job {last.job_id}; stop it first: "
                              f"autotune stop {last.run} --address {address}")
        run, run_dir = last.run, last.run_dir
        recorded = _usable_storage(last.storage)
        if last.storage and not recorded and not storage:
            raise ConfigError(f"run {run!r} keeps its results in {last.storage}, whose password is not recorded: "
                              f"pass --storage URL")
        storage = storage or recorded
    for j in list_jobs(client):
        if j.run == run and j.active:
            raise ConfigError(f"run {run!r} is still running as job {j.job_id}; stop it first")
    return run, submit_resume(client, run, run_dir, storage, client_name())


def _usable_storage(recorded: str) -> str | None:
    return recorded if recorded and ":***@" not in recorded else None


def stop(address: str | None, name: str, wait: float = 120.0) -> tuple[Job, str]:
    """Stop the running job of run ``name`` (SIGTERM to its driver); wait for it to end.  Returns the job
    and its final status."""
    client = job_client(address)
    job = find_job(client, name, active=True)
    client.stop_job(job.job_id)
    return job, wait_job(client, job.job_id, wait)


def wait_job(client: Any, job_id: str, timeout: float) -> str:
    deadline = time.time() + timeout
    status = ""
    while time.time() < deadline:
        status = _status(client.get_job_status(job_id))
        if status not in ACTIVE:
            return status
        time.sleep(0.5)
    return status


def print_logs(address: str | None, name: str, follow: bool, out: Any = None) -> str:
    """Print the newest job of run ``name``'s output; with ``follow``, until the job ends."""
    out = out or sys.stdout
    client = job_client(address)
    job = find_job(client, name)
    if not follow:
        out.write(client.get_job_logs(job.job_id))
        out.flush()
        return job.job_id

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job.job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return job.job_id


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"
