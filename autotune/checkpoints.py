"""Checkpoint files of a run, in one place: which to keep, deleting the others, and ``best/``.

Works the same on the run folder and on an object store (``--artifacts``).  The driver tells it about
each finished trial and what is in flight; it decides nothing about the search itself.

``keep_checkpoints = K``: a new trial outside the K best, or one it pushes out, loses its checkpoint,
but never while a trial in flight may load it (as its parent or a fall-back).  The deletion is
recorded in the store first; the records keep their checkpoint paths and hashes as lineage, flagged
``checkpoint_removed``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import yaml

from .artifacts import Artifacts
from .ranking import Leaderboard
from .records import TrialRecord, TrialSpec
from .statuses import COMPLETED, FAILED


class CheckpointFiles:
    """Keeps the K best checkpoints of a run (all when ``keep`` is None) and writes ``best/``."""

    def __init__(self, run_dir: Path, mode: str, keep: int | None, artifacts: str | None = None,
                 mark_removed: Callable[[list[int]], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.keep = keep
        self.artifacts = artifacts
        self.mark_removed = mark_removed or (lambda ids: None)
        self.kept = Leaderboard(mode, lambda r: bool(r.checkpoint) and not r.checkpoint_removed)
        self.doomed: dict[int, TrialRecord] = {}
        self._best_written: int | None = None

    def add(self, record: TrialRecord) -> list[int]:
        """A trial finished (or was loaded on resume); returns the ids whose checkpoints it dooms."""
        if not self.kept.add(record) and record.checkpoint and not record.checkpoint_removed \
                and self.keep is not None and record.status in (COMPLETED, FAILED):
            self.doomed[record.trial_id] = record  # failed, or finished without a score
            return [record.trial_id]
        out = []
        while self.keep is not None and len(self.kept) > self.keep:
            loser = self.kept.at(len(self.kept) - 1)
            self.kept.discard(loser.trial_id)
            self.doomed[loser.trial_id] = loser
            out.append(loser.trial_id)
        return out

    def prune(self, in_flight: Iterable[TrialSpec]) -> None:
        """Delete the doomed checkpoints that no trial in flight may load."""
        if not self.doomed:
            return
        loading = {p.trial_id for spec in in_flight for p in spec.parents}
        doomed = [r for tid, r in self.doomed.items() if tid not in loading]
        if not doomed:
            return
        self.mark_removed([r.trial_id for r in doomed])
        for r in doomed:
            r.checkpoint_removed = True
            del self.doomed[r.trial_id]
        if self.artifacts:
            store = Artifacts(self.artifacts)
            for r in doomed:
                store.delete(r.checkpoint)  # type: ignore[arg-type]
            return
        root = self.run_dir.resolve()
        for r in doomed:
            path = (root / r.checkpoint).resolve()  # type: ignore[operator]
            if path == root or root not in path.parents:
                continue  # never delete outside the run folder
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)

    def write_best(self, best: TrialRecord | None, metric: str, mode: str) -> None:
        """``best/``: the best config as YAML and a copy of its checkpoint, replaced atomically."""
        if best is None or best.trial_id == self._best_written:
            return
        run_dir = self.run_dir
        tmp = run_dir / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        doc = {"trial_id": best.trial_id, "round": best.round, "metric": metric, "mode": mode,
               "value": best.value, "config": best.config}
        (tmp / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        if best.checkpoint and self.artifacts:
            store = Artifacts(self.artifacts)
            dest = tmp / "checkpoint"
            store.download(best.checkpoint, dest / Path(best.checkpoint).name if store.is_file(best.checkpoint) else dest)
        elif best.checkpoint:
            src = run_dir / best.checkpoint
            if src.is_dir():
                shutil.copytree(src, tmp / "checkpoint")
            elif src.is_file():
                (tmp / "checkpoint").mkdir()
                shutil.copy2(src, tmp / "checkpoint" / src.name)
        old = run_dir / ".best.old"
        shutil.rmtree(old, ignore_errors=True)
        if (run_dir / "best").exists():
            os.replace(run_dir / "best", old)
        os.replace(tmp, run_dir / "best")
        shutil.rmtree(old, ignore_errors=True)
        self._best_written = best.trial_id
