"""Ctrl-C at safe points (autotune.interrupts): held through a database write, raised after it."""

from __future__ import annotations

import signal

import pytest

from autotune import interrupts


def test_a_ctrl_c_inside_a_critical_section_is_raised_when_it_ends():
    done = []
    with interrupts.handling():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.critical():
                with interrupts.critical():  # nested: only the outermost raises
                    signal.raise_signal(signal.SIGINT)
                    assert interrupts.held()
                done.append("inner")
                done.append("outer")  # still inside: the write goes on to its end
        assert done == ["inner", "outer"] and not interrupts.held()
        with pytest.raises(KeyboardInterrupt):  # outside a section: at once
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_raises_at_once():
    with interrupts.handling():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.critical():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
                raise AssertionError("the second Ctrl-C did not raise")
        assert not interrupts.held()
        with interrupts.critical():  # nothing is left held
            pass


def test_a_ctrl_c_during_a_store_write_lets_the_write_finish(tmp_path, monkeypatch):
    from autotune.store import Store

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run("r", "max", {})
    storage = store.storage
    original = storage.set_study_user_attr

    def interrupted_write(*args, **kwargs):  # Ctrl-C arrives while the database call runs
        signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(storage, "set_study_user_attr", interrupted_write)
    with interrupts.handling(), pytest.raises(KeyboardInterrupt):
        store.set_attr(run_id, "status", "running")
    monkeypatch.undo()
    assert store.attrs(run_id)["status"] == "running"  # written whole, then interrupted
    store.set_attr(run_id, "status", "interrupted")  # and the database is free for the next write
    assert store.attrs(run_id)["status"] == "interrupted"
