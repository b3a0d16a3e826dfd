"""The context-based concept classifier: accuracy on held-out scenes against how many images people labelled.

Synthetic inputs (said so): generated concept scenes (`apps.demo_scenes.concept_scene`: blurry, crowded, night,
each drawn or not at random) embedded by the bundled demo detector (`resources.concepts.Backbone`: the feature maps
Ultralytics keeps for the head, mean- and max-pooled). For each number of labelled scenes, the classifier trains on
that many scenes (every concept with its true answer, as a person labelling them would give) and is scored on the
same held-out scenes; accuracy = share of (scene, concept) answers right at probability 0.5, beside what answering
every concept's majority answer would score. Embedding and training times are printed too.

    PYTHONPATH=. .venv/bin/python benchmarks/concept_classifier.py [--held-out 200] [--labelled 10 20 40 80]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from apps.demo_scenes import SCENE_CONCEPTS, concept_scene
from core.concepts import concept_accuracy, train_concept_classifier
from core.settings import DEMO_WEIGHTS, REPO_ROOT
from core.task_config import load_task
from resources.concepts import ConceptModels

DEMO_CONCEPTS_TASK = REPO_ROOT / "tasks" / "demo_concepts.yaml"


def embedded_scenes(models: ConceptModels, seeds: range, imgsz: int
                    ) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Embeddings at `imgsz`, true labels per concept, and seconds per image spent embedding."""
    backbone = models.backbone(DEMO_WEIGHTS, imgsz)
    vectors, truth, seconds = [], [], 0.0
    for seed in seeds:
        image, concepts = concept_scene(seed)
        started = time.perf_counter()
        vectors.append(backbone.embed(np.ascontiguousarray(np.asarray(image)[:, :, ::-1])))
        seconds += time.perf_counter() - started
        truth.append(concepts)
    labels = {c: np.array([c in t for t in truth]) for c in SCENE_CONCEPTS}
    return np.stack(vectors), labels, seconds / len(seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--labelled", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--imgsz", type=int, default=load_task(DEMO_CONCEPTS_TASK).classifier.imgsz,
                        help="embedding size (default: the demo task's classifier.imgsz; 0: the weights' own 256)")
    parser.add_argument("--repeats", type=int, default=5, help="labelled sets drawn per size (seeds differ)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        models = ConceptModels(root=str(Path(scratch) / "models"))
        held_x, held_y, per_image = embedded_scenes(models, range(900_000, 900_000 + args.held_out), args.imgsz)
        majority = np.mean([max(y.mean(), 1 - y.mean()) for y in held_y.values()])
        print(f"backbone: {DEMO_WEIGHTS.name} at imgsz {args.imgsz or 'its own'}, embedding {held_x.shape[1]} "
              f"values, {per_image * 1000:.0f} ms per "
              f"image on this machine (torch CPU); {args.held_out} held-out scenes; majority answer "
              f"{majority:.3f}")
        print(f"{'labelled':>8} " + " ".join(f"{c:>8}" for c in SCENE_CONCEPTS) + "     mean  train ms")
        pool_x, pool_y, _ = embedded_scenes(models, range(args.repeats * max(args.labelled)), args.imgsz)
        for size in args.labelled:
            accuracies, train_ms = [], []
            for repeat in range(args.repeats):
                rows = slice(repeat * size, (repeat + 1) * size)
                started = time.perf_counter()
                classifier = train_concept_classifier(pool_x[rows], {c: y[rows] for c, y in pool_y.items()}, "demo")
                train_ms.append((time.perf_counter() - started) * 1000)
                if classifier is None or len(classifier.concepts) < len(SCENE_CONCEPTS):
                    continue  # a draw without a positive or a negative of some concept: nothing to compare
                accuracies.append(concept_accuracy(classifier, held_x, held_y))
            per_concept = {c: np.mean([a[c] for a in accuracies]) for c in SCENE_CONCEPTS}
            print(f"{size:>8} " + " ".join(f"{per_concept[c]:>8.3f}" for c in SCENE_CONCEPTS)
                  + f"   {np.mean(list(per_concept.values())):.3f}  {np.mean(train_ms):>8.1f}"
                  + f"   ({len(accuracies)} of {args.repeats} draws)")


if __name__ == "__main__":
    main()
