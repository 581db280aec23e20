"""The parent checkpoint a trial loads, chosen among its planned parents: the first that exists and
still matches the hash recorded when its trial finished (a missing or corrupt one falls back to the next,
or to scratch, and the choice says so)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, NamedTuple

from .records import ParentRef, TrialSpec


def hash_path(path: Path) -> str:
    """sha256 over a file, or over a folder's relative paths and contents in sorted order."""
    h = hashlib.sha256()
    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted((str(p.relative_to(path)), p) for p in path.rglob("*") if p.is_file())
    for rel, p in files:
        h.update(rel.encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class ParentChoice(NamedTuple):
    """The parent a trial loads: its ref, local path, the hash of what is loaded, a note on any fall-back,
    and whether this process keeps the parent's live state (its file's hash is then the recorded one,
    not yet read again)."""

    parent: ParentRef | None
    path: Path | None
    hash: str | None
    note: str | None
    in_memory: bool = False


def choose_parent(
    spec: TrialSpec, run_dir: Path, fetch: Callable[[ParentRef], Path | None] | None = None,
    held: Callable[[ParentRef], bool] | None = None,
) -> ParentChoice:
    """The first planned parent whose checkpoint exists and matches its recorded hash.

    ``fetch`` brings a parent's checkpoint to a local path first (trial folders in an object store).
    ``held(parent)``: this process keeps the live state of exactly that checkpoint (see
    :class:`~autotune.trial.KeptStates`); such a parent is taken without hashing its file again.
    """
    notes = []
    for p in spec.parents:
        try:
            path = fetch(p) if fetch is not None else run_dir / p.checkpoint
        except Exception as e:  # noqa: BLE001 - any storage error: try the next parent
            notes.append(f"parent trial {p.trial_id}: checkpoint could not be downloaded ({type(e).__name__}: {e})")
            continue
        if path is None or not path.exists():
            notes.append(f"parent trial {p.trial_id}: checkpoint missing")
            continue
        note = "; ".join(notes) + f"; fell back to parent trial {p.trial_id}" if notes else None
        if p.hash and held is not None and held(p):
            return ParentChoice(p, path, p.hash, note, True)
        try:
            digest = hash_path(path)
        except OSError as e:
            notes.append(f"parent trial {p.trial_id}: checkpoint unreadable ({e})")
            continue
        if p.hash and digest != p.hash:
            notes.append(f"parent trial {p.trial_id}: checkpoint corrupt (hash mismatch)")
            continue
        return ParentChoice(p, path, digest, note)
    if spec.parents:
        return ParentChoice(None, None, None, "; ".join(notes) + "; started from scratch")
    return ParentChoice(None, None, None, None)
