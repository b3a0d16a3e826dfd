"""Calibrated thresholds written as a task file (`autoannotate calibrate --write`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.task_config import LabelingTask


def write_calibrated_task(task: LabelingTask, proposal: dict, target_precision: float) -> Path:
    """A copy of the task file beside it (`NAME.calibrated.yaml`) with each calibrated concept's thresholds as
    per-concept overrides and the target recorded; concepts no threshold could calibrate keep theirs."""
    source = Path(task.source_file)
    data = yaml.safe_load(source.read_text())
    overrides = data.setdefault("thresholds", {}).setdefault("per_concept", {})
    for concept, proposed in proposal.items():
        if proposed["upper"] is not None:
            overrides.setdefault(concept, {}).update(upper=proposed["upper"], lower=proposed["lower"])
    data["target_precision"] = target_precision
    target = source.with_name(f"{source.stem}.calibrated.yaml")
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
