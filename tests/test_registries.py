"""Formats and runtimes are registries: what the CLI offers is what the registry holds, and a name it lacks is
one sentence naming the ones there are."""

import argparse

import pytest

from core.formats import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS, label_format
from engines import RUNTIMES, runtime_named


def choices_of(verb: str) -> list[str]:
    from apps.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(next(a for a in sub.choices[verb]._actions if a.dest == "format").choices)


def test_the_cli_offers_exactly_the_formats_that_read_and_write() -> None:
    assert IMPORT_FORMATS == ("yolo", "coco", "voc", "concepts-csv", "classify")
    assert EXPORT_FORMATS == ("yolo", "yolo-seg", "coco", "classify", "mot")
    assert choices_of("import") == [name for name, f in FORMATS.items() if f.read is not None]
    assert choices_of("export") == [name for name, f in FORMATS.items() if f.write is not None]


def test_a_format_that_does_not_read_or_write_is_one_sentence() -> None:
    with pytest.raises(ValueError) as refused:
        label_format("voc", reading=False)
    assert str(refused.value) == ("--format 'voc' is not a format autoannotate exports: yolo, yolo-seg, coco, "
                                  "classify, mot.")
    assert label_format("voc", reading=True).kind == "box"
    assert label_format("classify", reading=True).kind == "concept"


def test_the_detector_runs_any_registered_runtime_and_names_them_for_an_unknown_one() -> None:
    from core.settings import DEMO_WEIGHTS
    from resources.detector import Detector

    assert sorted(RUNTIMES) == ["onnx", "openvino", "torch"]
    assert Detector(weights=str(DEMO_WEIGHTS), runtime="auto").chosen_runtime() in ("onnx", "openvino")
    assert Detector(weights=str(DEMO_WEIGHTS), runtime="auto", device="cuda:0").chosen_runtime() == "torch"
    with pytest.raises(ValueError) as refused:
        Detector(weights=str(DEMO_WEIGHTS), runtime="tensorrt").load()
    assert str(refused.value) == ("runtime 'tensorrt' is not one autoannotate has: auto, torch, onnx, openvino (set "
                                  "AUTOANNOTATE_RUNTIME or the detector's `runtime`).")
    assert runtime_named("torch") is RUNTIMES["torch"]


def test_a_model_is_hashed_once_while_its_file_stays_and_again_once_rewritten(tmp_path) -> None:
    """`model_ref` is a model's identity (the sha256 of its weights), resolved once per process per file."""
    import hashlib
    import os
    import shutil

    from core.settings import DEMO_WEIGHTS
    from engines.base import model_ref

    weights = tmp_path / "best.pt"
    shutil.copyfile(DEMO_WEIGHTS, weights)
    first = model_ref(weights)
    assert first.model_id == hashlib.sha256(DEMO_WEIGHTS.read_bytes()).hexdigest()
    assert model_ref(tmp_path / "." / "best.pt") is first  # the same file, by any spelling: not hashed again
    replacement = tmp_path / "other.pt"
    replacement.write_bytes(b"other weights")
    os.replace(replacement, weights)  # trained weights put in place of the old ones
    assert model_ref(weights).model_id == hashlib.sha256(b"other weights").hexdigest()
