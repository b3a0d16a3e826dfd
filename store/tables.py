"""Every table, declared once: the DDL, the pandera model that validates each write, and the column
descriptions Dagster shows all come from these declarations.

The pandera models use the polars backend: writes of a million rows validate in well under a
second (the pandas backend loops over strings in Python), and DuckDB reads polars frames through
Arrow without a copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from core.annotations import ROLES, Kind, Source, Status
from core.image_checks import REJECTION_CODES, SUPPORTED_FORMATS

SHA256 = r"^[0-9a-f]{64}$"
IMAGE_FORMATS = sorted(set(SUPPORTED_FORMATS.values()))
POLARS_TYPES: dict[str, Any] = {
    "VARCHAR": pl.Utf8, "INTEGER": pl.Int64, "BIGINT": pl.Int64, "DOUBLE": pl.Float64, "BOOLEAN": pl.Boolean,
    "TIMESTAMP": pl.Datetime, "DATE": pl.Date, "VARCHAR[]": pl.List(pl.Utf8), "DOUBLE[]": pl.List(pl.Float64),
    "FLOAT[]": pl.List(pl.Float32),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str
    checks: tuple[pa.Check, ...] = ()
    nullable: bool = False
    unique: bool = False
    added_later: bool = False  # nullable column added after files were written: added to them on open


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    checks: tuple[pa.Check, ...] = ()
    # In a DuckLake two writers could insert one key twice: its writes take turns (see `write_turns`), unless
    # the key is unique by construction (an event id derived from its content and time).
    takes_turns: bool = True
    backfill: str | None = None  # fills the table from others when it is created in an existing file

    def ddl(self) -> list[str]:
        """Idempotent statements creating the table: safe to run on every open. The key is declared, not
        indexed: every write keeps keys unique itself (content-derived ids, anti-joins), in a DuckLake (which has
        no primary keys) and in a DuckDB file alike, where an index would be rewritten whole at every checkpoint
        (3 million predictions: 745 ms to close a connection after 700 new rows, 31 ms without the index)."""
        added = [f"ALTER TABLE {self.name} ADD COLUMN IF NOT EXISTS {c.name} {c.sql_type}"
                 for c in self.columns if c.added_later]
        return [f"CREATE TABLE IF NOT EXISTS {self.name} ({self.column_definitions()})", *added]

    def column_definitions(self) -> str:
        """The columns as CREATE TABLE lists them: name, type and NOT NULL where they hold no nulls."""
        return ", ".join(f"{c.name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns)

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera model every write of this table passes."""
        columns = {c.name: pa.Column(POLARS_TYPES[c.sql_type], checks=list(c.checks), nullable=c.nullable,
                                     unique=c.unique and len(self.primary_key) <= 1)
                   for c in self.columns}
        unique = list(self.primary_key) if len(self.primary_key) > 1 else None
        return pa.DataFrameSchema(columns, checks=list(self.checks), strict=True, coerce=True, unique=unique,
                                  name=self.name)


def sha256(name: str, description: str, **kwargs: Any) -> Column:
    return Column(name, "VARCHAR", description, checks=(pa.Check.str_matches(SHA256),), **kwargs)


def digest32(name: str, description: str, **kwargs: Any) -> Column:
    return Column(name, "VARCHAR", description, checks=(pa.Check.str_length(32, 32),), **kwargs)


def text(name: str, description: str, **kwargs: Any) -> Column:
    return Column(name, "VARCHAR", description, checks=(pa.Check.str_length(min_value=1),), **kwargs)


def one_of(name: str, values: list[str], description: str, **kwargs: Any) -> Column:
    return Column(name, "VARCHAR", description, checks=(pa.Check.isin(values),), **kwargs)


def unit(name: str, description: str, **kwargs: Any) -> Column:
    """A value in [0, 1]: normalised coordinates, confidences."""
    return Column(name, "DOUBLE", description, checks=(pa.Check.in_range(0.0, 1.0),), **kwargs)


def count(name: str, description: str, minimum: int = 0) -> Column:
    return Column(name, "INTEGER", description, checks=(pa.Check.ge(minimum),))


def timestamp(name: str, description: str) -> Column:
    return Column(name, "TIMESTAMP", description)


def _polygon_is_valid(data: PolarsData) -> pl.LazyFrame:
    points = pl.col(data.key)
    return data.lazyframe.select(points.is_null() | (
        (points.list.len() >= 6) & (points.list.len() % 2 == 0) & (points.list.min() >= 0)
        & (points.list.max() <= 1)))


def _box_is_ordered(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select((pl.col("x1") < pl.col("x2")) & (pl.col("y1") < pl.col("y2")))


# A box normalised to [0, 1] (x1 < x2, y1 < y2) and an optional polygon: predictions and annotations.
GEOMETRY = (
    unit("x1", "Left edge, as a share of the oriented image's width."),
    unit("y1", "Top edge, as a share of the oriented image's height."),
    unit("x2", "Right edge, as a share of the width (x1 < x2)."),
    unit("y2", "Bottom edge, as a share of the height (y1 < y2)."),
    Column("polygon", "DOUBLE[]", "Segmentation outline x0, y0, x1, y1, ... normalised; empty for boxes.",
           checks=(pa.Check(_polygon_is_valid, error="polygon must be >= 3 points (x, y pairs) inside [0, 1]"),),
           nullable=True),
)
GEOMETRY_CHECKS = (pa.Check(_box_is_ordered, error="box must have x1 < x2 and y1 < y2"),)

INPUTS = Table("inputs", "Validated, deduplicated images; one row per distinct byte string.", (
    sha256("input_id", "sha256 of the image's bytes; also its name in the image store.", unique=True),
    text("uri", "Path of the file the image was first ingested from."),
    text("batch", "Ingestion batch (partition) that first stored the image."),
    count("width", "Width in pixels after EXIF orientation.", minimum=1),
    count("height", "Height in pixels after EXIF orientation.", minimum=1),
    one_of("format", IMAGE_FORMATS, "Image format of the stored bytes."),
    Column("byte_size", "BIGINT", "Size of the stored file in bytes.", checks=(pa.Check.gt(0),)),
    text("stored_path", "Where the bytes sit in the content-addressed image store."),
    timestamp("ingested_at", "When the image was first stored (UTC)."),
), primary_key=("input_id",))

INPUT_SOURCES = Table("input_sources", "Every inbox file of every batch that held a usable image.", (
    text("uri", "Path of the inbox file."),
    text("batch", "Batch the file belonged to."),
    sha256("input_id", "The input its bytes are."),
    Column("duplicate_of_earlier", "BOOLEAN", "True when the same bytes were already an input."),
    timestamp("seen_at", "When the batch read the file (UTC)."),
), primary_key=("batch", "uri"))

REJECTED_INPUTS = Table("rejected_inputs", "Inbox files that are not usable images, with the reason.", (
    text("uri", "Path of the inbox file."),
    text("batch", "Batch the file belonged to."),
    one_of("reason_code", REJECTION_CODES, "Why, as a code."),
    Column("reason", "VARCHAR", "Why, as a sentence naming the file.", checks=(pa.Check.str_length(min_value=10),)),
    timestamp("detected_at", "When it was rejected (UTC)."),
), primary_key=("batch", "uri"))

VIDEOS = Table("videos", "Every inbox video of every batch: its frames decoded, sampled and kept as inputs, and where "
               "a damaged one stopped.", (
    text("uri", "Path of the inbox file."),
    text("batch", "Batch the file belonged to."),
    sha256("video_id", "sha256 of the video's bytes; also its name in the image store."),
    count("frames_decoded", "Frames decoded."),
    count("frames_sampled", "Frames the sampling rate chose."),
    count("frames_kept", "Frames kept as inputs."),
    count("skipped_similar", "Sampled frames skipped as near-identical to the last kept one."),
    Column("frame_rate", "DOUBLE", "The stream's average frame rate.", nullable=True),
    Column("duration_s", "DOUBLE", "Duration its header gives, in seconds.", nullable=True),
    Column("stopped", "VARCHAR", "Where a damaged or cut-short video stopped, as a sentence; empty when whole.",
           nullable=True),
    text("stored_path", "Where the video's bytes sit in the image store."),
    timestamp("ingested_at", "When the batch read it (UTC)."),
), primary_key=("batch", "uri"))

VIDEO_FRAMES = Table("video_frames", "Which input each kept video frame is: its video, index and time.", (
    sha256("video_id", "The video."),
    count("frame_index", "The frame's index in decoding order, from 0."),
    Column("timestamp_s", "DOUBLE", "Seconds from the start of the video.", checks=(pa.Check.ge(0.0),)),
    sha256("input_id", "The input the frame is (sha256 of its lossless PNG)."),
), primary_key=("video_id", "frame_index"))

MODELS = Table("models", "Every set of detector weights that produced predictions.", (
    sha256("model_id", "sha256 of the weights file.", unique=True),
    text("name", "File name of the weights."),
    text("path", "Where the weights were read from."),
    one_of("task_type", ["detect", "segment", "classify", "context"], "Ultralytics task of the weights, or "
           "`context` for a context-based concept classifier that autoannotate trained."),
    Column("class_names", "VARCHAR[]", "The model's class names, by class id."),
    timestamp("registered_at", "When the model was first used (UTC)."),
    Column("details", "VARCHAR", "For a trained concept classifier: its task, backbone and the labels it learned "
           "from (JSON).", nullable=True, added_later=True),
), primary_key=("model_id",))

EMBEDDINGS = Table("embeddings", "Each input's embedding by each backbone, computed once: a concept classifier "
                   "retrains on them without running the backbone again.", (
    sha256("input_id", "The input."),
    sha256("model_id", "The backbone: its weights' sha256, or when a task embeds at another size than the weights "
           "were trained at, the sha256 of that and the size."),
    Column("vector", "DOUBLE[]", "Mean- and max-pooled feature maps of the backbone's kept layers."),
    timestamp("embedded_at", "When it was computed (UTC)."),
), primary_key=("input_id", "model_id"))

OBJECT_EMBEDDINGS = Table("object_embeddings", "Each object annotation's embedding by each backbone: its crop's "
                          "pooled features, computed once; \"more like this\" ranks a task's objects by cosine "
                          "similarity to one of them.", (
    digest32("annotation_id", "The object annotation."),
    sha256("model_id", "The backbone (its weights' sha256, with the crop size)."),
    text("task", "Labeling task."),
    sha256("input_id", "The input the object is on."),
    Column("vector", "FLOAT[]", "Mean- and max-pooled feature maps of the object's crop."),
    timestamp("embedded_at", "When it was computed (UTC)."),
), primary_key=("annotation_id", "model_id"))

PREDICTIONS = Table("predictions", "Every detection of every model on every input, above the confidence floor; a "
                    "classifier's concept scores are predictions whose box is the whole image.", (
    digest32("prediction_id", "Derived from model, input, class and box: stable across re-runs.", unique=True),
    text("batch", "Batch the input was predicted in."),
    sha256("input_id", "The input."),
    sha256("model_id", "The model that predicted it."),
    text("class_name", "The model's class name."),
    unit("confidence", "The model's confidence."),
    *GEOMETRY,
    timestamp("predicted_at", "When the prediction was made (UTC)."),
), primary_key=("prediction_id",), checks=GEOMETRY_CHECKS)

PREDICTION_TRACKS = Table("prediction_tracks", "Which track each prediction on a video's frames belongs to, by each "
                          "tracker: a task with a `tracker` routes and reviews a track as a whole.", (
    digest32("prediction_id", "The prediction."),
    sha256("model_id", "The model that predicted it."),
    one_of("tracker", ["bytetrack", "botsort"], "Ultralytics' tracker that linked it."),
    sha256("video_id", "The video of its frame."),
    count("track_id", "The track, numbered per video and tracker from 1.", minimum=1),
    timestamp("tracked_at", "When (UTC)."),
), primary_key=("prediction_id", "tracker"))

PROCESSED_INPUTS = Table("processed_inputs", "Inputs a model has run on, with or without detections.", (
    sha256("input_id", "The input."),
    sha256("model_id", "The model."),
    text("batch", "Batch the input was predicted in."),
    count("prediction_count", "Detections above the confidence floor."),
    timestamp("processed_at", "When the model ran on it (UTC)."),
    Column("conf_floor", "DOUBLE", "The confidence floor it was predicted at: no task whose lower threshold is "
           "below it can be routed from these predictions. Empty before floors were recorded (0.05).",
           checks=(pa.Check.in_range(0.0, 1.0),), nullable=True, added_later=True),
), primary_key=("input_id", "model_id"))

ANNOTATIONS = Table("annotations", "The annotation history: one status event of one annotation per row; the "
                    "current state is the latest event per annotation_id.", (
    digest32("event_id", "Derived from annotation, status, source, annotator and time.", unique=True),
    Column("seq", "BIGINT", "Write order, breaking ties between events of one instant (the writer numbers its "
           "events after the largest stored one; DuckLake has no sequences).", checks=(pa.Check.ge(1),)),
    digest32("annotation_id", "The annotation this event belongs to."),
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    Column("prediction_id", "VARCHAR", "The prediction an auto annotation came from.", nullable=True),
    Column("model_id", "VARCHAR", "The model of that prediction.", nullable=True),
    Column("batch", "VARCHAR", "Batch of that prediction, or of an import.", nullable=True),
    text("concept", "The task's concept."),
    *GEOMETRY,
    unit("confidence", "The model's confidence (none for human boxes).", nullable=True),
    one_of("status", list(Status), "SUCCESS, AWAITING_REVIEW, AWAITING_CONSENSUS_REVIEW, PENDING, REJECTED or "
           "RETIRED."),
    text("annotator", "Who wrote the event: the task's annotator id, a reviewer or an importing user."),
    one_of("source", list(Source), "auto, review or import."),
    timestamp("event_at", "When the event happened (UTC)."),
    Column("rules", "VARCHAR", "The routing rules that wrote an auto event (see `routing_rules`); empty for "
           "people's events and for auto events written before rules were recorded.", nullable=True,
           added_later=True),
    one_of("kind", list(Kind), "box (an object) or concept (the whole image; its box is the whole image); empty "
           "for events written before kinds existed, which are boxes.", nullable=True, added_later=True),
    Column("original_concept", "VARCHAR", "A relabelled annotation: the concept it had before a person changed it "
           "(the model's or the importer's); empty otherwise.", nullable=True, added_later=True),
), primary_key=("event_id",), checks=GEOMETRY_CHECKS, takes_turns=False)


def latest_events_sql(where: str = "TRUE") -> str:
    """The latest event of every annotation among the events matching `where`, from the history itself:
    the state as of a cutoff when `where` bounds event_at. Ties in time go to the later write."""
    return f"""
        SELECT * FROM annotations WHERE {where}
        QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY event_at DESC, seq DESC) = 1"""


ANNOTATION_STATE = Table(
    "annotation_state", "The current state of every annotation: its latest event in `annotations`, kept up to date "
    "by every append, so reading current state never scans the whole history.",
    tuple(replace(c, unique=c.unique or c.name == "annotation_id") for c in ANNOTATIONS.columns),
    checks=GEOMETRY_CHECKS,
    backfill=f"INSERT INTO annotation_state BY NAME {latest_events_sql()}",
)

TASK_INPUTS = Table("task_inputs", "Inputs a task has routed, with how many annotations each got.", (
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    text("batch", "Batch it was routed in."),
    sha256("model_id", "Model whose predictions were routed."),
    count("annotation_count", "Predictions above the lower band."),
    timestamp("processed_at", "When it was routed (UTC)."),
    Column("rules", "VARCHAR", "The routing rules it was routed under (see `routing_rules`).", nullable=True,
           added_later=True),
), primary_key=("task", "input_id"))

TASK_CLASSES = Table("task_classes", "Each task's class ids: a concept keeps its id forever (exports and models "
                     "trained on them agree); new concepts get the next id.", (
    text("task", "Labeling task."),
    count("class_id", "The concept's class id in YOLO and COCO exports."),
    text("concept", "The concept."),
    timestamp("added_at", "When the concept got its id (UTC)."),
), primary_key=("task", "concept"))

ROUTING_RULES = Table("routing_rules", "Every set of routing rules a task has used, by the hash events record.", (
    text("rules", "Hash of the rules (16 hex digits).", unique=True),
    text("task", "Labeling task."),
    text("definition", "Concepts, class map and thresholds (JSON)."),
    timestamp("first_used_at", "When a batch was first routed under them (UTC)."),
), primary_key=("rules",))

REVIEW_ASSIGNMENTS = Table("review_assignments", "Which reviewer holds which input of which task.", (
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    text("reviewer", "The reviewer."),
    timestamp("assigned_at", "When it was assigned (UTC)."),
), primary_key=("task", "input_id"))

CONSENSUS_ASSIGNMENTS = Table("consensus_assignments", "A consensus task's images and who holds them: each of its "
                              "reviewers_per_image reviewers, and the adjudicator of its disagreements.", (
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    text("reviewer", "The reviewer or adjudicator."),
    one_of("role", ["review", "adjudicate"], "review: one of the independent reviewers; adjudicate: decides what "
           "they did not agree on."),
    timestamp("assigned_at", "When it was assigned (UTC)."),
), primary_key=("task", "input_id", "reviewer"))

CONSENSUS_DECISIONS = Table("consensus_decisions", "Each reviewer's own decision on each item of a consensus task "
                            "(the others never see it): accept (with the concept and box they left), reject, or "
                            "draw (a box they drew).", (
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    digest32("annotation_id", "The item: the annotation decided, or for `draw` the drawn box's own id."),
    text("reviewer", "Who decided."),
    one_of("decision", ["accept", "reject", "draw"], "What they decided."),
    one_of("kind", ["box", "concept"], "box (an object) or concept (the whole image)."),
    text("concept", "The concept they left (a relabel changes it)."),
    *GEOMETRY[:4],
    timestamp("decided_at", "When (UTC); deciding again replaces it until the item is resolved."),
), primary_key=("task", "annotation_id", "reviewer"), checks=GEOMETRY_CHECKS)

CONSENSUS_OUTCOMES = Table("consensus_outcomes", "What each consensus item resolved to once all its reviewers had "
                           "decided: who agreed, how well their boxes matched, and why.", (
    text("task", "Labeling task."),
    sha256("input_id", "The input."),
    digest32("annotation_id", "The item (a correction's outcome stands on the annotation replacing it), or the "
             "annotation made for boxes the reviewers drew."),
    one_of("status", [Status.SUCCESS, Status.REJECTED, Status.AWAITING_CONSENSUS_REVIEW], "Accepted or rejected "
           "by the quorum, or sent to an adjudicator."),
    Column("reviewers", "VARCHAR[]", "Who decided it."),
    Column("agreeing", "VARCHAR[]", "The quorum that decided the outcome (empty when it went to an adjudicator)."),
    Column("mean_iou", "DOUBLE", "Mean IoU between the accepting reviewers' boxes.", nullable=True),
    text("reason", "Why, in words."),
    timestamp("resolved_at", "When (UTC)."),
), primary_key=("task", "annotation_id"))

AUDIT_SENDS = Table("audit_sends", "Suspected label errors a label audit sent to review (`autoannotate audit "
                    "--send`): what it suspected, how sure it was and which detector audited; the review page shows "
                    "the reason.", (
    text("task", "Labeling task."),
    digest32("annotation_id", "The label sent back to review, or for a missed object the annotation made for the "
             "auditor's prediction."),
    sha256("input_id", "The input."),
    one_of("kind", ["missed object", "wrong concept", "bad box", "duplicate label"], "What the audit suspected."),
    unit("score", "How likely the label is wrong: 1 - cleanlab's label-quality score of that kind (for a duplicate: "
         "its IoU with the earlier label)."),
    text("evidence", "What the auditor saw, in words."),
    sha256("model_id", "The detector that audited the image."),
    text("sent_by", "Who sent it."),
    timestamp("sent_at", "When (UTC)."),
), primary_key=("task", "annotation_id"))

SPOT_CHECKS = Table("spot_checks", "Annotations sampled from a batch's accepted band, and discarded predictions, "
                    "sent to a reviewer to estimate the precision and the misses of the unreviewed bands.", (
    text("task", "Labeling task."),
    digest32("annotation_id", "The sampled annotation (for a discarded prediction, the annotation made for it)."),
    sha256("input_id", "The input."),
    text("batch", "Batch the sample was drawn from."),
    one_of("band", ["accept", "discard"], "The band it was drawn from."),
    unit("rate", "The task's sampling rate for that band when it was drawn."),
    timestamp("sampled_at", "When it was drawn (UTC)."),
), primary_key=("task", "annotation_id"))

REVIEWER_TOKENS = Table("reviewer_tokens", "Each reviewer's personal review-page token, stored only as its hash.", (
    text("reviewer", "The reviewer the token signs in as.", unique=True),
    sha256("token_sha256", "sha256 of the token (the token itself is shown once, by `review invite`).",
           unique=True),
    timestamp("created_at", "When it was issued (UTC); a new invite replaces the reviewer's earlier token."),
    one_of("role", list(ROLES), "reviewer (their tasks and queues) or lead (every task: creates versions, deletes "
           "inputs, removes annotations); empty for tokens issued before roles existed: reviewer.", nullable=True,
           added_later=True),
    Column("expires_at", "TIMESTAMP", "When the link stops signing in (UTC): `review invite --days` (default 30) "
           "after it was issued, or when `review revoke` ended it; empty for tokens issued before expiry existed: "
           "30 days after created_at.", nullable=True, added_later=True),
), primary_key=("reviewer",))

DELETED_INPUTS = Table("deleted_inputs", "Inputs a person deleted: they leave every task's current annotations, "
                       "queues and the versions built after; earlier versions still hold them.", (
    sha256("input_id", "The input.", unique=True),
    text("deleted_by", "Who deleted it."),
    timestamp("deleted_at", "When (UTC): versions with a later cutoff leave it out."),
    Column("purged_at", "TIMESTAMP", "When its stored bytes, embeddings and crops were removed (`--purge`).",
           nullable=True),
), primary_key=("input_id",))

DATASET_VERSIONS = Table("dataset_versions", "The latest version of each task and day (earlier contents live in "
                         "Dagster's materializations), and the named versions, frozen.", (
    Column("version_key", "VARCHAR", "TASK@YYYY-MM-DD, or TASK@NAME for a named (frozen) version.",
           checks=(pa.Check.str_matches(r"^.+@(\d{4}-\d{2}-\d{2}|[A-Za-z][\w.-]*)$"),), unique=True),
    text("task", "Labeling task."),
    Column("day", "DATE", "The day (UTC)."),
    timestamp("cutoff", "Events before this instant are in the version."),
    sha256("manifest_sha256", "sha256 of the manifest's bytes."),
    count("annotations", "Accepted annotations."),
    count("inputs", "Images with at least one accepted annotation."),
    text("per_concept", "Accepted annotations per concept (JSON)."),
    text("manifest_path", "Where the manifest is written."),
    timestamp("created_at", "When the version was first built (UTC)."),
    timestamp("changed_at", "When its manifest last changed (UTC)."),
    Column("frozen", "BOOLEAN", "A named version: built once, never rebuilt or changed.", nullable=True,
           added_later=True),
    Column("negatives", "INTEGER", "Negative images: routed for objects, none accepted or still to decide.",
           checks=(pa.Check.ge(0),), nullable=True, added_later=True),
), primary_key=("version_key",))

WRITE_TURNS = Table("write_turns", "DuckLake only: one row per keyed table, updated by every write of that table, so "
                    "that two processes writing one table at once conflict and one of them runs again (a DuckLake "
                    "has no unique keys to refuse the second copy of a row).", (
    text("table_name", "The table."),
    timestamp("taken_at", "When a writer last took its turn (UTC)."),
), primary_key=("table_name",))

def labelled_empty(name: str, description: str) -> Table:
    """A table of images a person labelled and found nothing of one kind on, per task."""
    return Table(name, description, (
        text("task", "Labeling task."),
        sha256("input_id", "The input."),
        text("batch", "The import that brought it."),
        text("annotator", "Who labelled the dataset (the importing user)."),
        timestamp("recorded_at", "When it was imported (UTC)."),
    ), primary_key=("task", "input_id"))


EMPTY_INPUTS = labelled_empty("empty_inputs", "Images a person looked at and found no object on, per task: a "
                              "dataset's images without labels, imported. Each is a negative of the task's versions.")
NO_CONCEPT_INPUTS = labelled_empty("no_concept_inputs", "Images a person labelled with none of the task's image-level "
                                   "concepts (a concepts CSV row with an empty concept): the concept classifier "
                                   "learns each as a negative of every concept.")

MODEL_EVALUATIONS = Table("model_evaluations", "Each detector's figures on a dataset version's val split, measured "
                          "with Ultralytics' validator: every candidate of that version is compared on it.", (
    sha256("model_id", "The detector evaluated."),
    text("task", "Labeling task."),
    text("version_key", "The dataset version whose val split it was evaluated on."),
    unit("map50", "mAP at IoU 0.5."),
    unit("map50_95", "mAP averaged over IoU 0.5 to 0.95."),
    text("per_class", "Per class: precision, recall, mAP50 (JSON)."),
    unit("auto_accepted", "autoannotate's measure: the share of its predictions on the val images it would "
         "auto-accept at the task's target precision (0.95 when the task sets none), thresholds calibrated there."),
    count("images", "Val images evaluated on."),
    timestamp("evaluated_at", "When it was measured (UTC)."),
), primary_key=("model_id", "task", "version_key"))

MODEL_PROMOTIONS = Table("model_promotions", "Every change of a task's current detector: a promotion (by the rule, "
                         "or a person) or a rollback; the latest row is the task's model.", (
    text("task", "Labeling task."),
    sha256("model_id", "The detector that became current."),
    Column("previous_model_id", "VARCHAR", "The detector it replaced.", nullable=True),
    one_of("action", ["promote", "rollback"], "What happened."),
    text("decided_by", "Who: `promote_when` (the training run's rule) or a person's user id."),
    text("reason", "Why, in a sentence with the figures."),
    timestamp("decided_at", "When (UTC)."),
), primary_key=("task", "decided_at"))

# The version of the tables' shape, raised with every change to a column (name, type, nullability) or a table.
# A database records each version it was brought to (`schema_versions`); one a newer release wrote is refused
# whole rather than half-understood. tests/test_store.py holds each version's `schema_digest`.
SCHEMA_VERSION = 1

SCHEMA_VERSIONS = Table("schema_versions", "Each schema version this database was brought to, and by which release: "
                        "the newest row is the shape its tables have. A database older than schema versions has none "
                        "until it is first opened.", (
    count("version", "The schema version (SCHEMA_VERSION of the release).", minimum=1),
    text("release", "The autoannotate release that brought the tables to it."),
    timestamp("upgraded_at", "When (UTC)."),
), primary_key=("version",))

TABLES: dict[str, Table] = {t.name: t for t in (
    INPUTS, INPUT_SOURCES, REJECTED_INPUTS, VIDEOS, VIDEO_FRAMES, MODELS, EMBEDDINGS, OBJECT_EMBEDDINGS, PREDICTIONS,
    PREDICTION_TRACKS, PROCESSED_INPUTS, ANNOTATIONS, ANNOTATION_STATE, TASK_INPUTS, TASK_CLASSES, ROUTING_RULES,
    REVIEW_ASSIGNMENTS, CONSENSUS_ASSIGNMENTS, CONSENSUS_DECISIONS, CONSENSUS_OUTCOMES, AUDIT_SENDS, SPOT_CHECKS,
    REVIEWER_TOKENS, DELETED_INPUTS, DATASET_VERSIONS, EMPTY_INPUTS, NO_CONCEPT_INPUTS, MODEL_EVALUATIONS,
    MODEL_PROMOTIONS, SCHEMA_VERSIONS, WRITE_TURNS)}


def schema_digest() -> str:
    """A digest of every table's shape (names, types, nullability, columns added later, keys): it changes exactly
    when the tables do, so a change that forgets to raise SCHEMA_VERSION is caught by a test."""
    shape = [(t.name, t.column_definitions(), [c.name for c in t.columns if c.added_later], t.primary_key)
             for t in sorted(TABLES.values(), key=lambda t: t.name)]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()
