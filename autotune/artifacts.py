"""Trial folders in an object store: ``--artifacts s3://bucket/prefix`` (or gs://, hdfs://, file://).

Without it, trial folders live in the run folder, which on a cluster must be a path every node
reaches (a shared file system).  With it, each trial runs in a scratch folder on its own node and
its whole folder (log, checkpoint, ``outcome.json``) is uploaded to ``URI/trials/NNNNN`` when it
ends; a Population-Based child downloads its parent's checkpoint from there first, so a child that
lands on another node than its parent still starts from the parent's weights (the recorded sha256
is checked after the download, as always).  File systems are pyarrow's, as in Ray: credentials come
from the usual environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...).

The run folder on the driver's machine keeps the database, ``run.json`` and ``best/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_SCRATCH = "AUTOTUNE_SCRATCH"


def check_uri(uri: str) -> str:
    """A URI pyarrow can open, or a ConfigError naming what is wrong (checked before a run starts)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(f"--artifacts must be a URI such as s3://bucket/prefix or file:///shared/path, got {uri!r}")
    try:
        import pyarrow.fs as pafs

        pafs.FileSystem.from_uri(uri)
    except Exception as e:  # noqa: BLE001 - unknown scheme, missing credentials, malformed URI
        raise ConfigError(f"cannot open --artifacts {uri}: {type(e).__name__}: {e}") from None
    return uri.rstrip("/")


def scratch_root(run_name: str) -> Path:
    """Where this node keeps a trial's files while it runs: ``$AUTOTUNE_SCRATCH`` or the temp folder."""
    base = os.environ.get(ENV_SCRATCH) or os.path.join(tempfile.gettempdir(), "autotune-scratch")
    return Path(base) / run_name


class Artifacts:
    """A run's trial folders under ``uri``; paths are the run-folder-relative ones the records hold."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    @cached_property
    def _fs(self) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(self.uri)
        return fs, root.rstrip("/")

    def _remote(self, rel: str) -> str:
        fs, root = self._fs
        return f"{root}/{rel.strip('/')}"

    def _info(self, rel: str) -> Any:
        fs, _ = self._fs
        return fs.get_file_info(self._remote(rel))

    def is_file(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(rel).type == pafs.FileType.File

    def exists(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(rel).type != pafs.FileType.NotFound

    def upload(self, local: Path, rel: str) -> None:
        """Replace ``rel`` with the local file or folder."""
        import pyarrow.fs as pafs

        fs, _ = self._fs
        self.delete(rel)
        if local.is_dir():
            fs.create_dir(self._remote(rel), recursive=True)
            pafs.copy_files(str(local), self._remote(rel), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
        else:
            fs.create_dir(self._remote(rel).rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(str(local), self._remote(rel), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)

    def download(self, rel: str, local: Path) -> bool:
        """Fetch ``rel`` (file or folder) to ``local``, replacing it; False if there is nothing."""
        import pyarrow.fs as pafs

        fs, _ = self._fs
        info = self._info(rel)
        if info.type == pafs.FileType.NotFound:
            return False
        if local.is_dir():
            shutil.rmtree(local)
        elif local.exists():
            local.unlink()
        local.parent.mkdir(parents=True, exist_ok=True)
        if info.type == pafs.FileType.Directory:
            local.mkdir()
        pafs.copy_files(self._remote(rel), str(local), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return True

    def read_text(self, rel: str) -> str | None:
        import pyarrow.fs as pafs

        fs, _ = self._fs
        if self._info(rel).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(self._remote(rel)) as f:
            return f.read().decode("utf-8", "replace")

    def delete(self, rel: str) -> None:
        import pyarrow.fs as pafs

        fs, _ = self._fs
        info = self._info(rel)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(self._remote(rel))
        elif info.type == pafs.FileType.File:
            fs.delete_file(self._remote(rel))
