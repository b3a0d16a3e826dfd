"""Turn a YOLO detect head's raw output into boxes, as Ultralytics' predictor does, with numpy only.

The ONNX runtime path runs the exported graph directly, without torch; this is the part of
Ultralytics' `non_max_suppression` that detection needs: best class per anchor, confidence
floor, class-aware greedy NMS at IoU 0.7, at most 300 boxes per image. End-to-end heads
(YOLOv10, YOLO26: rows of x1, y1, x2, y2, confidence, class) need no NMS.
"""

from __future__ import annotations

import numpy as np

NMS_IOU = 0.7  # Ultralytics' predict default (`iou`)
MAX_DETECTIONS = 300  # Ultralytics' `max_det`
MAX_NMS_CANDIDATES = 30_000  # Ultralytics' `max_nms`
CLASS_OFFSET = 7680  # Ultralytics' `max_wh`: boxes of different classes never overlap once offset


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each row of `boxes`."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + areas - inter + 1e-9)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first; a box overlapping a kept one by more than `iou` goes)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[box_iou_one_to_many(boxes[best], boxes[order]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def detections_from_raw(raw: np.ndarray, class_count: int, conf_floor: float, end_to_end: bool = False,
                        iou: float = NMS_IOU, max_detections: int = MAX_DETECTIONS) -> np.ndarray:
    """One image's raw head output -> rows of x1, y1, x2, y2, confidence, class in input pixels, best first.

    `raw` is (4 + classes, anchors) of centre-size boxes and class scores for an NMS head, or
    (detections, 6) for an end-to-end head."""
    if end_to_end:
        rows = raw[raw[:, 4] > conf_floor][:max_detections]
        return rows[:, :6].astype(np.float32)
    scores_by_class = raw[4:4 + class_count]
    classes = scores_by_class.argmax(0)
    scores = scores_by_class[classes, np.arange(raw.shape[1])]
    candidates = np.flatnonzero(scores > conf_floor)
    if candidates.size > MAX_NMS_CANDIDATES:
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:MAX_NMS_CANDIDATES]]
    centre, size = raw[0:2, candidates].T, raw[2:4, candidates].T
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    offset = classes[candidates, None].astype(boxes.dtype) * CLASS_OFFSET
    kept = greedy_nms(boxes + offset, scores[candidates], iou, max_detections)
    return np.column_stack([boxes[kept], scores[candidates][kept], classes[candidates][kept]]).astype(np.float32)
