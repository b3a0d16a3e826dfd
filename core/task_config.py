"""Labeling tasks: one YAML file each, parsed and validated before anything runs.

A task names the concepts to annotate, how the model's class names map onto them,
the decision thresholds (global, with per-concept overrides), the operators, the
reviewers, a priority and the user id that auto-annotations are written as.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Strict as StrictMode
from pydantic_core import ErrorDetails

from core.annotations import BAND_WRITABLE, Status

Operator = Literal[">", ">=", "=", "<=", "<"]
# Numbers and switches are taken as YAML wrote them: `upper: true` is no threshold, `auto_annotate: 1` no switch.
Number = Annotated[float, StrictMode(), AllowInfNan(False)]
Count = Annotated[int, StrictMode()]
Flag = Annotated[bool, StrictMode()]


def _checked_name(value: str) -> str:
    """A concept or reviewer name: not empty, no space around it, no control character (it names a label, a
    queue and a column of every export, and shows on the review page as text)."""
    if not value:
        raise ValueError("an empty name")
    if value != value.strip():
        raise ValueError(f"{value!r} has spaces around it; write {value.strip()!r}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value!r} holds a control character")
    return value


Name = Annotated[str, StrictMode(), AfterValidator(_checked_name)]


def _checked_sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value!r} is not a sha256 (64 lowercase hex digits, as `sha256sum` prints them)")
    return value


class TaskConfigError(ValueError):
    """A task file is wrong; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromoteWhen(Strict):
    """When a detector trained on the task's dataset versions replaces the task's model: its `metric` on the
    version's val split beats the current model's by at least `min_gain`."""

    metric: Literal["map50", "map50_95"] = "map50"
    min_gain: Number = Field(default=0.01, ge=0.0, le=1.0)


class InputScope(Strict):
    """Which inputs a task annotates: those whose inbox path matches one of `paths` (globs, relative to the inbox;
    `*` also crosses folders) and that arrived in one of `batches`; an empty list does not restrict."""

    paths: list[str] = Field(default_factory=list)
    batches: list[str] = Field(default_factory=list)


class ConceptThresholds(Strict):
    upper: Number | None = Field(default=None, ge=0.0, le=1.0)
    lower: Number | None = Field(default=None, ge=0.0, le=1.0)
    upper_operator: Operator | None = None
    lower_operator: Operator | None = None


class Thresholds(Strict):
    upper: Number = Field(ge=0.0, le=1.0)
    lower: Number = Field(ge=0.0, le=1.0)
    upper_operator: Operator = ">"  # accepted when confidence <op> upper
    lower_operator: Operator = ">"  # otherwise to review when confidence <op> lower
    per_concept: dict[str, ConceptThresholds] = Field(default_factory=dict)


class SpotCheck(Strict):
    """Shares of each batch sent to a reviewer although the thresholds decided them: auto-accepted annotations
    (their status stays unless the reviewer rejects or corrects them) and discarded predictions (they become
    annotations awaiting review). Which ones is fixed by `seed`: the same batch always gives the same sample."""

    accepted: Number = Field(default=0.0, ge=0.0, le=1.0)
    discarded: Number = Field(default=0.0, ge=0.0, le=1.0)
    seed: Count = 0


class Consensus(Strict):
    """Consensus review: each image in the review band (spot checks included) goes to `reviewers_per_image`
    distinct reviewers, who decide without seeing each other's decisions; an item `quorum` of them accept with
    the same concept and boxes overlapping by `agreement_iou` is accepted (their mean box), one `quorum` reject is
    rejected, and the rest wait for one of the `adjudicators`, whose decision is final."""

    reviewers_per_image: Count = Field(ge=2)
    agreement_iou: Number = Field(default=0.5, gt=0.0, le=1.0)
    quorum: Count | None = Field(default=None, ge=1)  # None: every one of them
    adjudicators: list[Name] = Field(min_length=1)

    @property
    def needed(self) -> int:
        return self.quorum or self.reviewers_per_image


class ModelChoice(Strict):
    """The task's detector. `sha256` pins the weights: any other file at `weights` is refused before it is read."""

    weights: str
    sha256: Annotated[str, StrictMode(), AfterValidator(_checked_sha256)] | None = None
    imgsz: Count = 0
    precision: Literal["fp32", "int8"] | None = None  # None: the deployment's (AUTOANNOTATE_PRECISION)


class ClassifierChoice(Strict):
    """Where a task's image-level concept scores come from: an Ultralytics classification model (`weights`: its
    `top_k` classes per image, mapped by `class_map`), or a context-based classifier that autoannotate trains on
    the images people labelled, over embeddings from `backbone` (any Ultralytics weights). `concepts`: the
    task's concepts that are image-level (all of them when left out)."""

    weights: str | None = None
    backbone: str | None = None
    concepts: list[str] = Field(default_factory=list)
    top_k: Count = Field(default=5, ge=1)
    imgsz: Count = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> ClassifierChoice:
        if (self.weights is None) == (self.backbone is None):
            raise ValueError("name either `weights` (an Ultralytics -cls model) or `backbone` (weights whose "
                             "embeddings a context-based classifier learns from), not both or neither")
        return self

    @property
    def kind(self) -> Literal["classify", "context"]:
        return "classify" if self.weights is not None else "context"


class BandStatus(Strict):
    """The status each band writes (as Clarifai's annotation writers choose): AWAITING_REVIEW puts the image in a
    reviewer's queue; PENDING keeps the annotation out of datasets and queues until someone decides it."""

    accept: Status = Status.SUCCESS
    review: Status = Status.AWAITING_REVIEW

    @field_validator("accept", "review")
    @classmethod
    def _writable(cls, status: Status) -> Status:
        if status not in BAND_WRITABLE:
            raise ValueError(f"a band writes one of {', '.join(BAND_WRITABLE)}, not {status}")
        return status


class ConceptRule(Strict):
    """The thresholds one concept is routed by, overrides applied."""

    concept: str
    upper: float
    lower: float
    upper_operator: Operator
    lower_operator: Operator

    @property
    def has_review_band(self) -> bool:
        if self.lower < self.upper:
            return True
        # Equal thresholds still leave the single value itself when accept is strict and review is not.
        return self.lower == self.upper and self.upper_operator == ">" and self.lower_operator == ">="


class LabelingTask(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: ModelChoice | None = None
    classifier: ClassifierChoice | None = None
    concepts: list[Name] = Field(min_length=1)
    class_map: dict[Name, Name] = Field(default_factory=dict)
    thresholds: Thresholds
    reviewers: list[Name] = Field(default_factory=list)
    allow_takeover: Flag = False  # may a reviewer decide images in another reviewer's queue?
    priority: Literal["low", "medium", "high"] = "medium"  # high first: in queues, runs and status
    auto_annotate: Flag = True  # false: the model still predicts, but the task writes nothing
    inputs: InputScope = Field(default_factory=InputScope)
    promote_when: PromoteWhen | None = None  # None: trained detectors are promoted by hand only
    annotator: str = Field(default="autoannotate", min_length=1)  # who auto-accepted annotations are by
    # Label quality: the accepted band's precision the team wants (the quality check warns below it, at the
    # lower bound of its 95 % interval), and how much a prediction must overlap a reference box to match it.
    target_precision: Number | None = Field(default=None, gt=0.0, lt=1.0)
    match_iou: Number = Field(default=0.5, gt=0.0, le=1.0)
    spot_check: SpotCheck = Field(default_factory=SpotCheck)
    # Exports take the model's negatives (images it found nothing on) by default only when the spot checks of the
    # discarded band measure a miss rate whose 95 % upper bound lies below this; None: only people's negatives.
    model_negatives_below_miss_rate: Number | None = Field(default=None, gt=0.0, lt=1.0)
    band_status: BandStatus = Field(default_factory=BandStatus)
    consensus: Consensus | None = None  # None: each review image goes to one reviewer
    tracker: Literal["bytetrack", "botsort"] | None = None  # videos: route and review each object's track whole
    # What reviewers see first: the most doubtful images, the ones covering the image embeddings best, or both.
    review_order: Literal["doubt", "diverse", "mixed"] = "doubt"
    source_file: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> LabelingTask:
        # Every problem at once, so a user fixes the file in one pass.
        problems = []
        concepts = set(self.concepts)
        if len(concepts) != len(self.concepts):
            problems.append("concepts: a concept is listed twice")
        for class_name, concept in self.class_map.items():
            if concept not in concepts:
                problems.append(f"class_map.{class_name}: unknown concept {concept!r} (concepts: "
                                f"{', '.join(self.concepts)})")
        for concept in self.thresholds.per_concept:
            if concept not in concepts:
                problems.append(f"thresholds.per_concept.{concept}: unknown concept {concept!r} (concepts: "
                                f"{', '.join(self.concepts)})")
        for rule in self.rules():
            prefix = ("thresholds.per_concept." + rule.concept) if rule.concept in self.thresholds.per_concept \
                else "thresholds"
            if rule.lower > rule.upper:
                problems.append(f"{prefix}.lower ({rule.lower}) is above {prefix}.upper ({rule.upper})")
        if self.classifier is not None:
            for concept in self.classifier.concepts:
                if concept not in concepts:
                    problems.append(f"classifier.concepts: unknown concept {concept!r} (concepts: "
                                    f"{', '.join(self.concepts)})")
        review_writes_queue = self.band_status.review == Status.AWAITING_REVIEW
        if not self.reviewers and ((review_writes_queue and any(rule.has_review_band for rule in self.rules()))
                                   or self.band_status.accept == Status.AWAITING_REVIEW):
            problems.append("reviewers: the thresholds leave a review band, so at least one reviewer is needed")
        if not self.reviewers and (self.spot_check.accepted or self.spot_check.discarded):
            problems.append("reviewers: spot checks go to a reviewer, so at least one reviewer is needed")
        if len(set(self.reviewers)) != len(self.reviewers):
            problems.append("reviewers: a reviewer is listed twice")
        if self.consensus is not None:
            k = self.consensus.reviewers_per_image
            if k > len(self.reviewers):
                problems.append(f"consensus.reviewers_per_image: {k} reviewers per image, but the task lists "
                                f"{len(self.reviewers)} reviewer(s)")
            if self.consensus.needed > k:
                problems.append(f"consensus.quorum: {self.consensus.quorum} is more than the {k} reviewers per "
                                "image")
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))  # a global mistake is said once, not per concept
        return self

    @property
    def adjudicators(self) -> list[str]:
        return list(self.consensus.adjudicators) if self.consensus else []

    @property
    def people(self) -> list[str]:
        """Everyone who decides the task's images: its reviewers, then its adjudicators."""
        return [*self.reviewers, *(a for a in self.adjudicators if a not in self.reviewers)]

    def concept_for(self, class_name: str) -> str | None:
        """The task's concept for a model class; identity when the class is itself a concept."""
        if class_name in self.class_map:
            return self.class_map[class_name]
        return class_name if class_name in self.concepts else None

    def rules(self) -> list[ConceptRule]:
        """One rule per concept, the per-concept overrides over the global values."""
        rules = []
        for concept in self.concepts:
            override = self.thresholds.per_concept.get(concept, ConceptThresholds())
            rules.append(ConceptRule(
                concept=concept,
                upper=self.thresholds.upper if override.upper is None else override.upper,
                lower=self.thresholds.lower if override.lower is None else override.lower,
                upper_operator=override.upper_operator or self.thresholds.upper_operator,
                lower_operator=override.lower_operator or self.thresholds.lower_operator,
            ))
        return rules

    @property
    def lowest_lower(self) -> float:
        """The lowest lower threshold of any concept: predictions below it are never kept, so the detector needs
        none under it."""
        return min(rule.lower for rule in self.rules())

    @property
    def detects(self) -> bool:
        """Does the task annotate objects? A task with a classifier and no `model` annotates whole images only."""
        return self.model is not None or self.classifier is None

    @property
    def image_concepts(self) -> list[str]:
        """The concepts its classifier scores on whole images (none without a classifier)."""
        if self.classifier is None:
            return []
        return list(self.classifier.concepts or self.concepts)

    def routing_definition(self) -> dict[str, Any]:
        """What decides a prediction's band and what it writes: concepts, class mapping, thresholds and (when not
        the default) the band statuses; not reviewers or names."""
        definition: dict[str, Any] = {"concepts": self.concepts, "class_map": dict(sorted(self.class_map.items())),
                      "thresholds": self.thresholds.model_dump(mode="json")}
        if self.band_status != BandStatus():
            definition["band_status"] = self.band_status.model_dump(mode="json")
        if self.inputs != InputScope():
            definition["inputs"] = self.inputs.model_dump(mode="json")
        if not self.auto_annotate:
            definition["auto_annotate"] = False
        return definition

    @property
    def priority_rank(self) -> int:
        """0 for high, 1 for medium, 2 for low: sorting by it puts the most urgent task first."""
        return ("high", "medium", "low").index(self.priority)

    def skips_batch(self, batch: str) -> str | None:
        """Why the task writes nothing for `batch` (switched off, or the batch is outside its scope), or None."""
        if not self.auto_annotate:
            return "auto_annotate is false"
        if self.inputs.batches and batch not in self.inputs.batches:
            return "the batch is not one of inputs.batches"
        return None

    @property
    def rules_hash(self) -> str:
        """Identifies the routing rules; recorded on every auto event and every routed batch."""
        text = json.dumps(self.routing_definition(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def under_rules(self, definition: dict[str, Any]) -> LabelingTask:
        """This task as it routed under an earlier `routing_definition` (for checking what those rules wrote)."""
        return self.model_copy(update={"concepts": definition["concepts"], "class_map": definition["class_map"],
                                       "thresholds": Thresholds(**definition["thresholds"]),
                                       "band_status": BandStatus(**definition.get("band_status", {}))})

    def band_statuses(self) -> dict[str, str]:
        """Band -> the status it writes (the discard band writes nothing)."""
        return {"accept": str(self.band_status.accept), "review": str(self.band_status.review)}

    def resolve(self, path: str) -> Path:
        """A path of the task file, relative to the file."""
        resolved = Path(path).expanduser()
        return resolved if resolved.is_absolute() else (Path(self.source_file).parent / resolved).resolve()

    def weights_path(self) -> Path | None:
        return None if self.model is None else self.resolve(self.model.weights)

    def classifier_path(self) -> Path | None:
        """The classification weights, or the context-based classifier's backbone."""
        if self.classifier is None:
            return None
        return self.resolve(self.classifier.weights or self.classifier.backbone or "")


def check_class_map(task: LabelingTask, class_names: list[str], model_name: str) -> None:
    """Refuse a task whose class_map names classes its model does not have (a typo would map nothing)."""
    # A detector trained in the task's concept space has the concepts themselves as classes.
    missing = [name for name, concept in task.class_map.items() if name not in class_names
               and concept not in class_names]
    if missing:
        raise TaskConfigError(
            f"{task.source_file or task.name}: class_map names {', '.join(repr(m) for m in missing)}, which the model "
            f"{model_name} does not have; its classes are {', '.join(class_names[:20])}"
            f"{f' ... ({len(class_names)} in all)' if len(class_names) > 20 else ''} (`autoannotate model classes` "
            "lists them).")


def _field_path(location: tuple[Any, ...]) -> str:
    """The field as `thresholds.per_concept.ball`; a key with other characters (a newline, a dot) as its repr."""
    return ".".join(str(part) if re.fullmatch(r"[\w-]+", str(part)) else repr(part) for part in location
                    if not str(part).startswith("function-after"))


def _problem(error: ErrorDetails) -> str:
    """One pydantic error as `field: what is wrong`."""
    field = _field_path(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = f"unknown value {error['input']!r}; {message[0].lower()}{message[1:]}"
    elif error["type"] in ("float_type", "int_type", "bool_type", "string_type", "finite_number"):
        wanted = {"float_type": "a number", "int_type": "a whole number", "bool_type": "true or false",
                  "string_type": "a text", "finite_number": "a finite number"}[error["type"]]
        message = f"{json.dumps(error['input'], default=str)} is not {wanted}"
    elif error["type"] in ("greater_than_equal", "less_than_equal"):
        message = f"{error['input']} is outside [0, 1]" if "threshold" in field else message
    elif error["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(error["loc"][-1]), sorted(_field_names(LabelingTask)), n=1, cutoff=0.6)
        message = "no such field" + (f" (did you mean `{near[0]}`?)" if near else "")
    return f"{field}: {message}" if field else message


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name a task file may spell, nested sections' included (for "did you mean")."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for kind in (info.annotation, *get_args(info.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names |= _field_names(kind)
    return names - {"source_file"}


def parse_task(data: object, source: str) -> LabelingTask:
    """Validate a task's mapping; the error is one sentence naming the file and every wrong field."""
    if not isinstance(data, dict):
        raise TaskConfigError(f"{source}: a task file must be a YAML mapping (name, concepts, thresholds, ...).")
    try:
        return LabelingTask.model_validate({**data, "source_file": source})
    except ValidationError as errors:
        raise TaskConfigError(f"{source}: {'; '.join(_problem(e) for e in errors.errors())}.") from None


def load_task(path: Path | str) -> LabelingTask:
    path = Path(path)
    if not path.is_file():
        raise TaskConfigError(f"{path}: no such task file.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TaskConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]}).") from None
    return parse_task(data, str(path.resolve()))
