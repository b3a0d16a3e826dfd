"""What a task would write for some images, computed the same way the pipeline does; writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.annotations import BAND_STATUS
from core.image_checks import Rejection, inspect_image_file, load_oriented_rgb
from core.routing import route_predictions
from core.settings import Settings
from core.task_config import check_class_map, load_task
from resources import build_resources
from resources.tasks import detector_for
from store.predictions import prediction_rows


def dry_run(settings: Settings, task_file: str, images: list[Path]) -> dict:
    """Band and status of every prediction of the task's model on `images`."""
    task = load_task(task_file)
    detector = detector_for(task, build_resources(settings)["detector"])
    model = detector.load()
    check_class_map(task, model.class_names, model.name)
    report = []
    for path in images:
        checked = inspect_image_file(path, settings.max_pixels)
        if isinstance(checked, Rejection):
            report.append({"image": str(path), "rejected": checked.reason})
            continue
        array = np.ascontiguousarray(np.asarray(load_oriented_rgb(checked.data))[:, :, ::-1])
        detections = model.predict([model.letterbox(array)], detector.conf_floor)[0]
        rows = pd.DataFrame(prediction_rows("dry-run", model.model_id, checked.input_id, detections,
                                            datetime.now(UTC)), columns=["class_name", "confidence", "prediction_id"])
        routed = route_predictions(rows, task).sort_values("confidence", ascending=False)
        report.append({"image": str(path), "predictions": [
            {"class_name": r.class_name, "concept": r.concept, "confidence": round(float(r.confidence), 4),
             "band": r.band, "status": str(BAND_STATUS.get(r.band, "not written"))}
            for r in routed.itertuples()]})
    return {"task": task.name, "model_id": model.model_id, "images": report}
