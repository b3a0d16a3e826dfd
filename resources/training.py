"""Training and evaluating detectors with Ultralytics, on a dataset version's YOLO export."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from core.offline import make_ultralytics_offline
from engines.base import file_sha256, trained_imgsz
from storage.blobs import blob_store


class DetectorTraining(dg.ConfigurableResource):
    """Fine-tunes a detector on a YOLO dataset and measures detectors on its val split. CPU-sized defaults: a few
    epochs at the weights' own image size. Trained weights are stored content-addressed under `root` (a folder on
    this machine), and published to `shared` (a folder or s3://bucket/prefix: where every machine finds them)."""

    root: str
    shared: str = ""  # "": weights stay in `root`
    epochs: int = 3
    imgsz: int = 0  # 0: the size the parent weights were trained at
    batch: int = 8
    device: str = "cpu"
    architecture: str = ""  # a model YAML: train from scratch with it instead of fine-tuning the current weights

    def train(self, parent: Path, data_yaml: Path, log: Callable[[str], object], root: Path | None = None) -> Path:
        """Fine-tune `parent` (or train `architecture` from scratch) on the dataset; the trained weights, stored
        as `<sha256>.pt` in `root` (default: the resource's)."""
        make_ultralytics_offline()
        from ultralytics import YOLO

        imgsz = self.imgsz or trained_imgsz(YOLO(str(parent)))
        if self.architecture and not Path(self.architecture).is_file():
            raise FileNotFoundError(f"AUTOANNOTATE_TRAIN_ARCHITECTURE={self.architecture} does not exist: give a model "
                                    "YAML on disk (autoannotate never downloads one), or leave it unset to fine-tune.")
        model = YOLO(self.architecture or str(parent), task="detect")

        def epoch_done(trainer: object) -> None:
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            log(f"epoch {trainer.epoch + 1}/{trainer.epochs}: "
                + ", ".join(f"{name.split('/')[-1]} {value:.4f}" for name, value in losses.items()))

        model.add_callback("on_train_epoch_end", epoch_done)
        with tempfile.TemporaryDirectory() as scratch:
            model.train(data=str(data_yaml), epochs=self.epochs, imgsz=imgsz, batch=self.batch, device=self.device,
                        workers=0, project=scratch, name="train", exist_ok=True, plots=False, amp=False, val=False,
                        seed=0, deterministic=True, verbose=False, pretrained=not self.architecture)
            trained = Path(scratch) / "train" / "weights" / "last.pt"
            target = Path(root or self.root) / f"{file_sha256(trained)}.pt"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(trained, target)
        return target

    def publish(self, weights: Path) -> str:
        """Where every machine of the deployment finds `weights` (content-addressed: stored once): its location
        in `shared`, or its own path when nothing is shared."""
        if not self.shared:
            return str(weights)
        store = blob_store(self.shared)
        if not store.exists(weights.name):
            store.put_file(weights.name, weights)
        return store.url(weights.name)

    @staticmethod
    def labelled_boxes(data_yaml: Path, split: str) -> int:
        """How many labels a split of a YOLO export holds (its label files' lines)."""
        folder = data_yaml.parent / "labels" / split
        return sum(1 for label in folder.glob("*.txt") for line in label.read_text().splitlines() if line.strip())

    @staticmethod
    def class_names(weights: Path) -> list[str]:
        """The class names of trained weights, in id order."""
        make_ultralytics_offline()
        from ultralytics import YOLO

        names = YOLO(str(weights)).names
        return [names[i] for i in sorted(names)]

    def evaluate(self, weights: Path, data_yaml: Path) -> dict:
        """Ultralytics' validator on the dataset's val split: mAP50, mAP50-95 and per class precision, recall
        and mAP50."""
        make_ultralytics_offline()
        from ultralytics import YOLO

        model = YOLO(str(weights))
        imgsz = self.imgsz or trained_imgsz(model)
        with tempfile.TemporaryDirectory() as scratch:
            metrics = model.val(data=str(data_yaml), split="val", imgsz=imgsz, batch=self.batch, device=self.device,
                                workers=0, plots=False, verbose=False, project=scratch, name="val")
        names = metrics.names
        per_class = {names[int(c)]: {"precision": round(float(metrics.box.p[i]), 4),
                                     "recall": round(float(metrics.box.r[i]), 4),
                                     "map50": round(float(metrics.box.ap50[i]), 4)}
                     for i, c in enumerate(metrics.ap_class_index)}
        return {"map50": float(metrics.box.map50), "map50_95": float(metrics.box.map), "per_class": per_class}

    def val_predictions(self, weights: Path, data_yaml: Path, conf_floor: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The detector's predictions on the dataset's val images (image, class_name, confidence, x1..y2
        normalised) and the val labels (image, class_name, x1..y2): what the task's thresholds are judged on."""
        make_ultralytics_offline()
        import yaml
        from ultralytics import YOLO

        data = yaml.safe_load(data_yaml.read_text())
        root, names = Path(data.get("path") or data_yaml.parent), data["names"]  # no `path`: beside data.yaml
        images = sorted((root / data["val"]).iterdir())
        model = YOLO(str(weights))
        imgsz = self.imgsz or trained_imgsz(model)
        found, labels = [], []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            for image, result in zip(chunk, model.predict([str(p) for p in chunk], conf=conf_floor, imgsz=imgsz,
                                                          device=self.device, verbose=False), strict=True):
                for box, confidence, cls in zip(result.boxes.xyxyn.tolist(), result.boxes.conf.tolist(),
                                                result.boxes.cls.tolist(), strict=True):
                    found.append({"input_id": image.stem, "class_name": model.names[int(cls)],
                                  "confidence": confidence, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]})
        for label in sorted((root / "labels" / "val").glob("*.txt")):
            for line in label.read_text().split("\n"):
                if line.strip():
                    cls, cx, cy, w, h = (float(v) for v in line.split()[:5])
                    labels.append({"input_id": label.stem, "class_name": names[int(cls)], "x1": cx - w / 2,
                                   "y1": cy - h / 2, "x2": cx + w / 2, "y2": cy + h / 2})
        columns = ["input_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
        return pd.DataFrame(found, columns=columns), pd.DataFrame(labels, columns=[c for c in columns
                                                                                    if c != "confidence"])
