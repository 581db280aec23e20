"""The statements the results database's writes run on Optuna's own tables, built once.

Building a SQLAlchemy statement per write (its clauses, their coercion, the cache key of each new
object) cost more than the database's work for a trial's rows; these are built at import with bound
parameters, so a write only binds values.  They run on a plain ``Connection`` (see
``Store._transaction``): an ORM session added its own bookkeeping to every statement and commit while
none of these writes uses the ORM.  Tables, columns and value encodings are Optuna's (its
``_rdb.models``), so the database stays one Optuna reads and writes.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Iterable

from optuna.storages._rdb import models as rdb
from optuna.trial import TrialState
from sqlalchemy import bindparam, delete, exists, func, insert, select, update

STUDIES = rdb.StudyModel.__table__
TRIALS = rdb.TrialModel.__table__
PARAMS = rdb.TrialParamModel.__table__
TRIAL_ATTRS = rdb.TrialUserAttributeModel.__table__
INTERMEDIATE = rdb.TrialIntermediateValueModel.__table__
VALUES = rdb.TrialValueModel.__table__
RUN_ATTRS = rdb.StudyUserAttributeModel.__table__

#: the run's row, locked for the transaction (numbers are given one at a time, as Optuna does)
LOCK_RUN = select(STUDIES.c.study_id).where(STUDIES.c.study_id == bindparam("run")).with_for_update()
COUNT_TRIALS = select(func.count(TRIALS.c.trial_id)).where(TRIALS.c.study_id == bindparam("run"))
INSERT_TRIAL = insert(TRIALS)
INSERT_PARAMS = insert(PARAMS)
INSERT_TRIAL_ATTRS = insert(TRIAL_ATTRS)
INSERT_INTERMEDIATE = insert(INTERMEDIATE)
INSERT_VALUE = insert(VALUES)
#: a RUNNING trial finished: its state and its times (bind names differ from the columns SET)
FINISH_TRIAL = (update(TRIALS)
                .where(TRIALS.c.trial_id == bindparam("tid"), TRIALS.c.state == TrialState.RUNNING)
                .values(state=bindparam("new_state"), datetime_start=bindparam("t_start"),
                        datetime_complete=bindparam("t_end")))
#: IN lists up to this long are bound value by value (``v0``, ``v1``, ...), a statement per length
#: compiled once; longer ones expand (SQLAlchemy renders an expanding list again at every execution)
FIXED_IN = 32


def _in(n: int) -> Any:
    return [bindparam(f"v{i}") for i in range(n)] if n <= FIXED_IN else bindparam("values", expanding=True)


def _in_values(values: list[Any]) -> dict[str, Any]:
    return {f"v{i}": v for i, v in enumerate(values)} if len(values) <= FIXED_IN else {"values": values}


@functools.lru_cache(maxsize=None)
def _delete_trial_attrs(n: int) -> Any:
    return delete(TRIAL_ATTRS).where(TRIAL_ATTRS.c.trial_id == bindparam("tid"), TRIAL_ATTRS.c.key.in_(_in(n)))


@functools.lru_cache(maxsize=None)
def _delete_intermediate(n: int) -> Any:
    return delete(INTERMEDIATE).where(INTERMEDIATE.c.trial_id == bindparam("tid"), INTERMEDIATE.c.step.in_(_in(n)))


@functools.lru_cache(maxsize=None)
def _run_attr_rows(n: int) -> Any:
    return select(RUN_ATTRS.c.key, RUN_ATTRS.c.study_user_attribute_id).where(
        RUN_ATTRS.c.study_id == bindparam("run"), RUN_ATTRS.c.key.in_(_in(n)))


def _size(n: int) -> int:
    return min(n, FIXED_IN + 1)


#: the attributes a run's summary needs (``TALLY_KEYS``) of each finished trial row of a run (one that holds
#: its record, under the bound ``record`` key), in row order, without reading the record itself
TALLY_KEYS = ("trial_id", "status", "ended")
_RECORDED = TRIAL_ATTRS.alias("recorded")
TALLY_ATTRS = (select(TRIALS.c.trial_id, TRIAL_ATTRS.c.key, TRIAL_ATTRS.c.value_json)
               .join(TRIAL_ATTRS, TRIAL_ATTRS.c.trial_id == TRIALS.c.trial_id)
               .where(TRIALS.c.study_id == bindparam("run"), TRIAL_ATTRS.c.key.in_(TALLY_KEYS),
                      exists().where(_RECORDED.c.trial_id == TRIALS.c.trial_id,
                                     _RECORDED.c.key == bindparam("record")))
               .order_by(TRIALS.c.trial_id))
#: one attribute (the bound ``key``) of each trial row of a run that has it, in row order: the records, one
#: query instead of Optuna's ``get_all_trials``, which builds every trial's params, values and attributes
ATTR_OF_TRIALS = (select(TRIALS.c.trial_id, TRIAL_ATTRS.c.value_json)
                  .join(TRIAL_ATTRS, TRIAL_ATTRS.c.trial_id == TRIALS.c.trial_id)
                  .where(TRIALS.c.study_id == bindparam("run"), TRIAL_ATTRS.c.key == bindparam("key"))
                  .order_by(TRIALS.c.trial_id))
#: the record (the bound ``record`` key) of the trial rows of a run whose ``trial_id`` attribute is the bound
#: ``id`` (its JSON text), the latest attempt first
_ID = TRIAL_ATTRS.alias("ident")
RECORD_OF_TRIAL = (select(TRIAL_ATTRS.c.value_json)
                   .join(TRIALS, TRIALS.c.trial_id == TRIAL_ATTRS.c.trial_id)
                   .where(TRIALS.c.study_id == bindparam("run"), TRIAL_ATTRS.c.key == bindparam("record"),
                          exists().where(_ID.c.trial_id == TRIALS.c.trial_id, _ID.c.key == "trial_id",
                                         _ID.c.value_json == bindparam("id")))
                   .order_by(TRIALS.c.trial_id.desc()))
#: the (objective 0) value of each trial row of a run that has one
TALLY_VALUES = (select(VALUES.c.trial_id, VALUES.c.value, VALUES.c.value_type)
                .join(TRIALS, TRIALS.c.trial_id == VALUES.c.trial_id)
                .where(TRIALS.c.study_id == bindparam("run"), VALUES.c.objective == 0))


UPDATE_RUN_ATTR = (update(RUN_ATTRS).where(RUN_ATTRS.c.study_user_attribute_id == bindparam("row"))
                   .values(value_json=bindparam("text")))
INSERT_RUN_ATTR = insert(RUN_ATTRS)

_INTER_MODEL, _VALUE_MODEL = rdb.TrialIntermediateValueModel, rdb.TrialValueModel


def put_run_attrs(con: Any, run_id: int, values: dict[str, Any]) -> None:
    """Set run (study) attributes, keys as stored: one read, then one update and one insert for all."""
    have = dict(con.execute(_run_attr_rows(_size(len(values))), {"run": run_id, **_in_values(list(values))}).all())
    changed = [{"row": have[k], "text": json.dumps(v)} for k, v in values.items() if k in have]
    new = [{"study_id": run_id, "key": k, "value_json": json.dumps(v)} for k, v in values.items() if k not in have]
    if changed:
        con.execute(UPDATE_RUN_ATTR, changed)
    if new:
        con.execute(INSERT_RUN_ATTR, new)


def put_trial_rows(con: Any, trial_id: int, user_attrs: dict[str, Any], intermediate: dict[int, float],
                   value: float | None, replace: bool, stored_steps: Iterable[int] | None = None) -> None:
    """A trial's user attributes (JSON, values that are not JSON as text), intermediate values and
    (objective 0) value.  ``replace``: attributes with the same keys and intermediate values at the
    same steps go first (only at ``stored_steps`` when given: the steps the trial has stored).  The
    value is written once, when the trial finishes (a second one would break Optuna's unique key)."""
    if replace:
        if user_attrs:
            con.execute(_delete_trial_attrs(_size(len(user_attrs))), {"tid": trial_id, **_in_values(list(user_attrs))})
        steps = [int(s) for s in intermediate]
        if stored_steps is not None:
            steps = sorted(set(steps) & {int(s) for s in stored_steps})
        if steps:
            con.execute(_delete_intermediate(_size(len(steps))), {"tid": trial_id, **_in_values(steps)})
    if user_attrs:
        con.execute(INSERT_TRIAL_ATTRS, [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v, default=str)}
                                         for k, v in user_attrs.items()])
    if intermediate:
        rows = []
        for step, v in intermediate.items():
            stored, kind = _INTER_MODEL.intermediate_value_to_stored_repr(v)
            rows.append({"trial_id": trial_id, "step": int(step), "intermediate_value": stored,
                         "intermediate_value_type": kind})
        con.execute(INSERT_INTERMEDIATE, rows)
    if value is not None:
        stored, kind = _VALUE_MODEL.value_to_stored_repr(value)
        con.execute(INSERT_VALUE, {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})


def stored_value(value: float | None, kind: Any) -> float:
    """A value row as the float it stands for (infinities are stored by type)."""
    return float(_VALUE_MODEL.stored_repr_to_value(value, kind))
