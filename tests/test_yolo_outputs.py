"""The numpy post-processing of the ONNX runtime path, against hand-made boxes and Ultralytics' own NMS."""

import numpy as np

from core.yolo_outputs import detections_from_raw, greedy_nms


def raw_output(rows: list[tuple], class_count: int) -> np.ndarray:
    """(4 + classes, anchors) from rows of (cx, cy, w, h, class, score)."""
    raw = np.zeros((4 + class_count, len(rows)), dtype=np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(rows):
        raw[:4, anchor] = cx, cy, w, h
        raw[4 + cls, anchor] = score
    return raw


def test_overlapping_boxes_of_one_class_keep_the_best_and_other_classes_stay() -> None:
    raw = raw_output([(50, 50, 20, 20, 0, 0.9), (51, 50, 20, 20, 0, 0.8), (50, 50, 20, 20, 1, 0.7),
                      (200, 200, 10, 10, 0, 0.6)], class_count=2)
    rows = detections_from_raw(raw, 2, conf_floor=0.25)
    assert rows[:, 5].tolist() == [0, 1, 0]
    assert np.allclose(rows[:, 4], [0.9, 0.7, 0.6])
    assert np.allclose(rows[0, :4], [40, 40, 60, 60])


def test_confidence_floor_is_exclusive_and_iou_boundary_keeps_equal_overlap() -> None:
    raw = raw_output([(50, 50, 20, 20, 0, 0.25), (50, 50, 20, 20, 0, 0.2500001)], class_count=1)
    assert detections_from_raw(raw, 1, conf_floor=0.25)[:, 4].tolist() == [np.float32(0.2500001)]
    # IoU exactly 0.5: a box is dropped only when it overlaps more than the threshold.
    boxes = np.array([[0, 0, 30, 10], [10, 0, 40, 10]], dtype=np.float64)
    assert greedy_nms(boxes, np.array([0.9, 0.8]), iou=0.5, limit=300).tolist() == [0, 1]
    assert greedy_nms(boxes, np.array([0.9, 0.8]), iou=0.49, limit=300).tolist() == [0]


def test_at_most_max_detections_best_first() -> None:
    raw = raw_output([(i * 30 + 15, 15, 10, 10, 0, 0.3 + i / 1000) for i in range(50)], class_count=1)
    rows = detections_from_raw(raw, 1, conf_floor=0.1, max_detections=7)
    assert len(rows) == 7
    assert np.allclose(rows[:, 4], [0.3 + i / 1000 for i in range(49, 42, -1)])


def test_end_to_end_heads_are_only_filtered() -> None:
    raw = np.array([[1, 2, 3, 4, 0.9, 2], [1, 2, 3, 4, 0.1, 0], [5, 6, 7, 8, 0.5, 1]], dtype=np.float32)
    rows = detections_from_raw(raw, 3, conf_floor=0.25, end_to_end=True)
    assert rows.tolist() == [[1, 2, 3, 4, np.float32(0.9), 2], [5, 6, 7, 8, 0.5, 1]]


def test_same_boxes_as_ultralytics_non_max_suppression_on_a_crowded_random_head() -> None:
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(11)
    anchors, classes = 4000, 5
    raw = np.zeros((4 + classes, anchors), dtype=np.float32)
    raw[0:2] = rng.uniform(0, 640, (2, anchors))
    raw[2:4] = rng.uniform(5, 120, (2, anchors))
    raw[4:] = rng.uniform(0, 1, (classes, anchors)) ** 4
    ours = detections_from_raw(raw, classes, conf_floor=0.05)
    theirs = non_max_suppression(torch.from_numpy(raw[None]), conf_thres=0.05, iou_thres=0.7, max_det=300)[0]
    assert len(ours) == len(theirs) == 300
    assert np.allclose(ours, theirs.numpy(), atol=1e-4)
