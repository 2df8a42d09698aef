"""Reading what earlier versions saved: every rule for runs, records and configs written before a change.

Each rule says what the earlier version did, so an old run loads, resumes and reports as it trained.
"""

from __future__ import annotations

from typing import Any

from sgjax import config as config_lib

# Fields added after runs were saved, with what those runs did: the layer scan, per-element masks,
# QF/TI data drawn held-out first, TI scored on the whole output, one TI subsample for every member.
# A field maps to the tasks it changed, or None for every task: an old QF or Dyck run never read
# tense_drop_last, so it takes today's default and resumes as it was.
SAVED_BEFORE_OPTION = {
    "model": {"scan_layers": (True, None), "dropout_draw": ("per_element", None)},
    "data": {"generation": ("heldout_first", ("question", "tense"))},
    "eval": {"tense_drop_last": (False, ("tense",)), "tense_sample_per_member": (False, ("tense",))},
}


def saved_before(section: str, task: str | None) -> dict[str, Any]:
    """What a run of `task` saved before a field of `section` existed did, for each such field."""
    fields = SAVED_BEFORE_OPTION.get(section, {})
    return {k: v for k, (v, tasks) in fields.items() if tasks is None or task in tasks}


def with_fields_saved_before(section: str, values: dict, task: str | None) -> dict:
    """A saved config section with the fields it predates filled in as its run used them."""
    return {**saved_before(section, task), **values} if section in SAVED_BEFORE_OPTION else values


def layout_of_auto(task: str) -> str:
    """The layout `auto` meant before runs recorded auto's choice: rows for QF/TI, packed for Dyck."""
    return "packed" if task == "dyck" else "rows"


def renamed(rec: dict) -> dict:
    """A metrics record in today's keys. Dyck runs logged before 2026-12-07 wrote the distance-≥10 test accuracy
    as `gen_acc` and all closings as `gen_acc_all`; `gen_acc` is now all closings and the other `gen_acc_far`."""
    if "gen_acc_all" not in rec:
        return rec
    rec = dict(rec)
    rec["gen_acc_far"] = rec.pop("gen_acc", None)
    rec["gen_acc"] = rec.pop("gen_acc_all")
    return rec


def saved_config(d: Any) -> config_lib.Config:
    """A saved config.json as a Config, with the fields it predates filled in as its run used them."""
    if isinstance(d, dict):  # another shape is config_lib.from_dict's to refuse
        task = d.get("task")
        d = {k: with_fields_saved_before(k, v, task) if isinstance(v, dict) else v for k, v in d.items()}
    return config_lib.from_dict(d)
