"""Per-round records: TensorBoard scalars/figures and one JSON line per round.

:class:`RoundTracker` is the server's :class:`~fedls.federation.observers.base.RoundLog`.
Headline numbers become TensorBoard scalars; per-client values go to ``metrics.jsonl`` (under
``per_client``) and one histogram per name and round, not to one chart per client.

TensorBoard tags are the ``metrics.jsonl`` keys, unchanged. What a reader sees first is set by
a custom-scalars layout (the *Custom Scalars* tab), rewritten whenever a round brings tags that
a chart of the layout shows for the first time:

1. *Privacy vs utility* — test accuracy, label-count recovery, model-inversion Acc@1 with its
   interval, reconstruction PSNR against its baselines (when the run reconstructs images);
2. *Utility*, 3. *Gradient leakage*, 4. *Model-inversion leakage*, 5. *Diagnostics*,
6. *Bookkeeping* (clients, time), and *Other* for any tag no category claims.

Each run also carries its resolved configuration as text (``config``) and an HParams session
(hyper-parameters from ``config.toml``; metrics are the last values of headline scalars), so
single ``simulate`` runs sit side by side in the HParams tab. :meth:`RoundTracker.finish` adds
the session's end status and a text summary of the final round against round 0.

A write that fails (a full disk) raises :class:`~fedls.run_dir.OutputError`, one line naming
the file; the round whose row could not be written is not counted, earlier rows stay.
TensorBoard writes events from a thread of its own and hands its error to the next call, so
that thread's own traceback is kept off the terminal (:func:`_quiet_event_writer_errors`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.writer import FileWriter

from fedls.run_dir import CONFIG_FILE, RunDirectory, output_error

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

LEAK_G = "leakage/gradient/"
LEAK_MI = "leakage/model_inversion/"
_TAG = re.compile(r"^[A-Za-z0-9_./-]+$")


# -- the custom-scalars layout ----------------------------------------------------------------
def anchored(tag: str) -> str:
    """The regex a multiline chart needs to show exactly ``tag`` (charts match by prefix)."""
    return "^" + tag.replace(".", r"\.") + "$"


@dataclass(frozen=True)
class Chart:
    """One chart: a multiline chart of exact tags, or a margin chart (value, lower, upper)."""

    title: str
    tags: tuple[str, ...]
    margin: bool = False

    def __post_init__(self) -> None:
        if self.margin and len(self.tags) != 3:
            raise ValueError(f"margin chart {self.title!r} needs (value, lower, upper), got {self.tags}")
        for tag in self.tags:
            # multiline charts take regexes; tags with only these characters need no escaping
            if not _TAG.match(tag):
                raise ValueError(f"tag {tag!r} has characters a chart regex would misread")

    def proto(self) -> layout_pb2.Chart:
        if self.margin:
            value, lower, upper = self.tags
            # the margin card escapes these itself: exact tag names
            series = layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)
            return layout_pb2.Chart(title=self.title, margin=layout_pb2.MarginChartContent(series=[series]))
        regexes = [anchored(tag) for tag in self.tags]
        return layout_pb2.Chart(title=self.title, multiline=layout_pb2.MultilineChartContent(tag=regexes))


@dataclass(frozen=True)
class Category:
    """A titled group of charts; a written tag under one of ``prefixes`` that no chart of the
    category shows gets a chart of its own there, so nothing logged is left out."""

    title: str
    charts: tuple[Chart, ...] = ()
    prefixes: tuple[str, ...] = ()


# The headline charts hold one quantity each (plus its own baselines): a custom-scalars chart
# colours lines by run and tells tags apart only by marker, so mixed charts are unreadable.
ACCURACY = Chart("utility: test accuracy (higher = better)", ("global/accuracy",))
LABELS = Chart("gradient leakage: clients whose label counts the server recovered exactly (higher = more leakage)",
               (f"{LEAK_G}label_count_accuracy",))
MI_INTERVAL = Chart("model inversion: Acc@1 of attack images, 95% interval (higher = more leakage)",
                    (f"{LEAK_MI}acc1", f"{LEAK_MI}acc1_low", f"{LEAK_MI}acc1_high"), margin=True)
PSNR = Chart("reconstruction PSNR in dB, with hard-label and mean-image baselines (higher = more leakage)", (
    f"{LEAK_G}recon_psnr", f"{LEAK_G}recon_psnr_hard_label", f"{LEAK_G}recon_psnr_mean_image",
))
LABEL_MAE = Chart("label-count error per class, with the even-spread guess (lower = more leakage)", (
    f"{LEAK_G}label_count_mae", f"{LEAK_G}label_count_mae_chance",
))

LAYOUT: tuple[Category, ...] = (
    Category("Privacy vs utility", (ACCURACY, LABELS, MI_INTERVAL, PSNR)),
    Category("Utility", (
        Chart("test accuracy", ("global/accuracy",)),
        Chart("test loss", ("global/loss",)),
        Chart("expected calibration error", ("global/ece",)),
        Chart("mean confidence", ("global/mean_confidence",)),
        Chart("mean logit norm (grows under negative α)", ("global/mean_logit_norm",)),
        Chart("label-smoothing α in force", ("train/alpha",)),
    ), prefixes=("global/", "train/")),
    Category("Gradient leakage", (
        LABELS,
        LABEL_MAE,
        Chart("error of the recovered α", (f"{LEAK_G}alpha_error",)),
        Chart("probe label recovered", (f"{LEAK_G}probe_label_success",)),
        PSNR,
    ), prefixes=(LEAK_G,)),
    Category("Model-inversion leakage", (
        MI_INTERVAL,
        Chart("Acc@1 vs prior-only baseline", (f"{LEAK_MI}acc1", f"{LEAK_MI}baseline_acc1")),
        Chart("lift over the baseline", (f"{LEAK_MI}lift",)),
        Chart("judge accuracy (reliability of Acc@1)", (f"{LEAK_MI}judge_accuracy",)),
    ), prefixes=(LEAK_MI,)),
    Category("Diagnostics", prefixes=("diagnostics/",)),
    Category("Bookkeeping", (
        Chart("seconds per round",
              ("time/round_seconds", "time/server_eval_seconds", "time/attack_gradient_s", "time/attack_model_s")),
        Chart("clients sampled / missing / degraded", ("clients/num-clients", "clients/missing", "clients/degraded")),
    ), prefixes=("clients/", "time/")),
)
OTHER = "Other"


def build_layout(written: Iterable[str], layout: Sequence[Category] = LAYOUT) -> layout_pb2.Layout:
    """The layout for the tags written so far: a chart appears once any of its tags has data
    (an empty chart would only say "no data"); charts keep their fixed tag lists, so the
    layouts of several runs merge into one (TensorBoard merges equal charts by content)."""
    tags = set(written)
    shown: set[str] = set()
    categories = []
    for category in layout:
        charts = [chart for chart in category.charts if tags & set(chart.tags)]
        covered = {tag for chart in category.charts for tag in chart.tags}
        extra = sorted(t for t in tags - covered if any(t.startswith(p) for p in category.prefixes))
        charts += [Chart(tag.split("/", 1)[-1], (tag,)) for tag in extra if _TAG.match(tag)]
        if charts:
            categories.append(layout_pb2.Category(title=category.title, chart=[c.proto() for c in charts]))
        shown |= {tag for chart in charts for tag in chart.tags}
    rest = sorted(t for t in tags - shown if _TAG.match(t))
    if rest:
        categories.append(layout_pb2.Category(title=OTHER, chart=[Chart(t, (t,)).proto() for t in rest], closed=True))
    return layout_pb2.Layout(category=categories)


def _layout_summary(layout: layout_pb2.Layout) -> Summary:
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    value = Summary.Value(tag=custom_scalars_metadata.CONFIG_SUMMARY_TAG, tensor=tensor,
                          metadata=custom_scalars_metadata.create_summary_metadata())
    return Summary(value=[value])


# -- HParams -----------------------------------------------------------------------------------
HPARAMS: tuple[tuple[str, api_pb2.DataType], ...] = (
    ("dataset", api_pb2.DATA_TYPE_STRING),
    ("model", api_pb2.DATA_TYPE_STRING),
    ("partition", api_pb2.DATA_TYPE_STRING),
    ("clients", api_pb2.DATA_TYPE_FLOAT64),
    ("rounds", api_pb2.DATA_TYPE_FLOAT64),
    ("local_epochs", api_pb2.DATA_TYPE_FLOAT64),
    ("lr", api_pb2.DATA_TYPE_FLOAT64),
    ("alpha", api_pb2.DATA_TYPE_FLOAT64),
    ("defense", api_pb2.DATA_TYPE_STRING),
    ("defense_options", api_pb2.DATA_TYPE_STRING),
    ("attacks", api_pb2.DATA_TYPE_STRING),
    ("gradient_threat", api_pb2.DATA_TYPE_STRING),
    ("seed", api_pb2.DATA_TYPE_FLOAT64),
)
# HParams shows a session's last value of each metric tag: the final round's number
HPARAM_METRICS: tuple[str, ...] = (
    "global/accuracy",
    "global/ece",
    f"{LEAK_G}label_count_accuracy",
    f"{LEAK_G}label_count_mae",
    f"{LEAK_G}recon_psnr",
    f"{LEAK_MI}acc1",
    f"{LEAK_MI}lift",
)
# HParams knows success, failure, running and unknown: an interrupted run kept its finished rounds
# but did not fail, so it is "unknown" there (the run's summary text says "interrupted")
STATUS = {"complete": api_pb2.STATUS_SUCCESS, "interrupted": api_pb2.STATUS_UNKNOWN, "failed": api_pb2.STATUS_FAILURE}


def hparam_values(config: Mapping[str, Any]) -> dict[str, str | float]:
    """The run's hyper-parameters from its resolved configuration (``config.toml`` as a dict);
    absent keys are left out rather than invented."""
    values: dict[str, str | float] = {}
    for name, kind in HPARAMS:
        if name == "gradient_threat":
            value: Any = (config.get("gradient_attack") or {}).get("threat", "honest")
        elif name == "defense_options":
            value = json.dumps(config.get("defense_options") or {}, sort_keys=True)
        else:
            value = config.get(name)
        if value is None:
            continue
        values[name] = float(value) if kind == api_pb2.DATA_TYPE_FLOAT64 else str(value)
    return values


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    metadata = hparams_metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def _experiment() -> Summary:
    # identical in every run: TensorBoard takes the first experiment it finds for the whole logdir
    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=name, type=kind) for name, kind in HPARAMS],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in HPARAM_METRICS],
    )
    return _hparams_summary(hparams_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def _session_start(values: Mapping[str, str | float], group: str) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(group_name=group)
    for name, value in values.items():
        if isinstance(value, str):
            info.hparams[name].string_value = value
        else:
            info.hparams[name].number_value = value
    return _hparams_summary(hparams_metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def _session_end(status: str) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=STATUS.get(status, api_pb2.STATUS_UNKNOWN))
    return _hparams_summary(hparams_metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


# -- links ---------------------------------------------------------------------------------------
PINNED: tuple[str, ...] = (
    "global/accuracy", f"{LEAK_G}label_count_accuracy", f"{LEAK_MI}acc1", f"{LEAK_G}label_count_mae", f"{LEAK_G}recon_psnr",
)


# Time Series sorts tag groups by name and opens the first two; these copies of the headline
# numbers form the group that sorts first, so `tensorboard --logdir runs` opens on privacy vs
# utility. metrics.jsonl keeps one key per number (the copies exist only in the event file).
FIRST_SCREEN = "0_privacy_vs_utility/"
FIRST_SCREEN_TAGS: dict[str, str] = {  # numbered: cards sort by name within a group
    "global/accuracy": "1_test_accuracy",
    f"{LEAK_MI}acc1": "2_model_inversion_acc1",
    f"{LEAK_MI}baseline_acc1": "3_model_inversion_acc1_prior_alone",
    f"{LEAK_G}label_count_mae": "4_gradient_label_count_error",
    f"{LEAK_G}label_count_mae_chance": "5_gradient_label_count_error_even_guess",
    f"{LEAK_G}label_count_accuracy": "6_gradient_label_counts_exact",
    f"{LEAK_G}recon_psnr": "7_gradient_reconstruction_psnr",
}


def tensorboard_url(port: int = 6006, host: str = "localhost", pinned: Sequence[str] = PINNED) -> str:
    """A Time Series link with the privacy-vs-utility charts pinned at the top. Time Series
    itself sorts groups by name (``clients`` first) and opens the first two; pinned cards come
    before every group. A pinned tag that no run has is left out by TensorBoard (checked in
    headless Chromium), so the default list may name tags only some runs log."""
    cards = json.dumps([{"plugin": "scalars", "tag": tag} for tag in pinned], separators=(",", ":"))
    return f"http://{host}:{port}/?pinnedCards={quote(cards, safe='')}#timeseries"


# -- the tracker -----------------------------------------------------------------------------------
_hook_lock = threading.Lock()


def _quiet_event_writer_errors() -> None:
    """Keep the traceback of TensorBoard's writer thread off the terminal when a write fails.

    The thread stores the error, which the writer raises again on its next call from the
    tracker (turned into one :class:`~fedls.run_dir.OutputError` line there), and then dies
    with it, so Python's thread hook would also print a traceback a user cannot act on. Only
    OSErrors of that thread are kept back (logged at debug level); everything else reaches the
    previous hook."""
    with _hook_lock:
        previous = threading.excepthook
        if getattr(previous, "fedls_event_writer", False):
            return

        def hook(args: threading.ExceptHookArgs) -> None:
            if isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError):
                log.debug("TensorBoard's writer thread stopped: %s", args.exc_value)
                return
            previous(args)

        hook.fedls_event_writer = True  # type: ignore[attr-defined]
        threading.excepthook = hook


class RoundTracker:
    """Collects a round's metrics from several producers, then writes them once."""

    def __init__(self, run: RunDirectory, layout: Sequence[Category] = LAYOUT) -> None:
        self.run = run
        self._failed = False
        _quiet_event_writer_errors()
        with self._writing():
            self.writer = SummaryWriter(log_dir=str(run.path))
        self._layout_spec = tuple(layout)
        self._pending: dict[str, float] = {}
        self._per_client: dict[str, dict[str, float]] = {}
        self._round = 0
        self._written: set[str] = set()
        self._layout: bytes | None = None
        self._first: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self._finished = False
        self._write_run_header()

    @property
    def server_round(self) -> int:
        return self._round

    def start_round(self, server_round: int) -> None:
        self._round = server_round
        self._pending = {}
        self._per_client = {}

    # -- RoundLog -----------------------------------------------------------------------
    def scalars(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._pending[key] = float(value)

    def per_client(self, name: str, values: Mapping[int, float]) -> None:
        if not values:
            return
        self._per_client[name] = {str(client): float(v) for client, v in sorted(values.items())}
        finite = np.asarray([v for v in values.values() if math.isfinite(v)], dtype=np.float64)
        if finite.size:
            with self._writing():
                self.writer.add_histogram(f"per_client/{name}", finite, self._round)

    def figure(self, tag: str, figure: Figure) -> None:
        with self._writing():
            self.writer.add_figure(tag, figure, self._round, close=True)

    # -- bookkeeping --------------------------------------------------------------------
    def add(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        self.scalars({f"{prefix}{key}": value for key, value in metrics.items()})

    def flush_round(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the round's scalars to TensorBoard and one record to metrics.jsonl (last: the
        row is what makes a round finished on disk, see :meth:`RunDirectory.append_metrics`)."""
        with self._writing():
            for key, value in sorted(self._pending.items()):
                if math.isfinite(value):
                    self.writer.add_scalar(key, value, self._round)
                    self._written.add(key)
                    if key in FIRST_SCREEN_TAGS:
                        self.writer.add_scalar(f"{FIRST_SCREEN}{FIRST_SCREEN_TAGS[key]}", value, self._round)
            self._update_layout()
            self.writer.flush()
        record: dict[str, Any] = {"round": self._round, **self._pending, **(extra or {})}
        if self._per_client:
            record["per_client"] = self._per_client
        self.run.append_metrics(record)
        if self._first is None:
            self._first = record
        self._last = record
        return record

    def finish(self, status: str, final_record: Mapping[str, Any] | None = None) -> None:
        """End the run's HParams session with ``status`` (``complete``, ``interrupted`` or
        ``failed``) and add a text ``summary``: headline numbers of the final round (default:
        the last flushed record) against round 0. Call once, before :meth:`close`.

        After a failed write (a full disk) nothing more is written: the error that stopped the
        run has been raised already, and another one here would hide it."""
        if self._finished or self._failed:
            return
        self._finished = True
        final = dict(final_record) if final_record is not None else self._last
        step = int(final.get("round", self._round)) if final else self._round
        with self._writing():
            self.writer.add_text("summary", summary_markdown(status, self._first, final), step)
            self._events().add_summary(_session_end(status), step)
            self.writer.flush()

    def close(self) -> None:
        """Close the event file; after a failed write only as far as the writer still can (its
        last flush would fail again)."""
        try:
            self.writer.close()
        except OSError as exc:
            if not self._failed:
                raise output_error(self._event_file(), exc) from None
            log.debug("closing the event file after a failed write: %s", exc)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed TensorBoard write into one :class:`OutputError` line. The writer raises
        the OSError of its thread again on every later call, so the tracker remembers it."""
        try:
            yield
        except OSError as exc:
            self._failed = True
            raise output_error(self._event_file(), exc) from None

    def _event_file(self) -> str:
        writer = getattr(self, "writer", None)
        name = getattr(getattr(getattr(writer, "file_writer", None), "event_writer", None), "_file_name", None)
        return str(name) if name else f"{self.run.path}/events.out.tfevents.*"

    def _events(self) -> FileWriter:
        """The writer's event file, for raw summaries (HParams, custom-scalars layout).

        ``SummaryWriter.__init__`` opens it and only ``close()`` drops it; torch declares the
        attribute through a ``= None`` assignment, so the checker would otherwise see ``None``."""
        return cast(FileWriter, self.writer.file_writer)

    # -- once per run -------------------------------------------------------------------
    def _write_run_header(self) -> None:
        """The resolved configuration as text and the HParams session start, both read from
        the run's own ``config.toml`` (what ``--config`` would re-run), at step 0."""
        file = self.run.path / CONFIG_FILE
        try:
            text = file.read_text()
            config = tomllib.loads(text)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            log.warning("no HParams entry or config text for %s: cannot read %s (%s)", self.run.path.name, file, exc)
            return
        with self._writing():
            self.writer.add_text("config", f"```toml\n{text.rstrip()}\n```", 0)
            writer = self._events()
            writer.add_summary(_experiment(), 0)
            writer.add_summary(_session_start(hparam_values(config), self.run.path.name), 0)

    def _update_layout(self) -> None:
        layout = build_layout(self._written, self._layout_spec)
        payload = layout.SerializeToString()
        if payload == self._layout:
            return
        # written at the round's step: TensorBoard reads the latest layout of each run, and an
        # event with a smaller step than earlier ones would make it purge this tag's history
        self._events().add_summary(_layout_summary(layout), self._round)
        self._layout = payload


SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("global/accuracy", "↑ better utility"),
    ("global/ece", "↓ better calibration"),
    (f"{LEAK_G}label_count_accuracy", "↑ more leakage"),
    (f"{LEAK_G}label_count_mae", "↓ more leakage"),
    (f"{LEAK_G}label_count_mae_chance", "chance baseline"),
    (f"{LEAK_G}recon_psnr", "↑ more leakage"),
    (f"{LEAK_G}recon_psnr_hard_label", "baseline"),
    (f"{LEAK_G}recon_psnr_mean_image", "baseline"),
    (f"{LEAK_MI}acc1", "↑ more leakage"),
    (f"{LEAK_MI}baseline_acc1", "prior-only baseline"),
    (f"{LEAK_MI}lift", "↑ more leakage"),
)


def summary_markdown(status: str, first: Mapping[str, Any] | None, final: Mapping[str, Any] | None) -> str:
    """A Markdown table of the headline numbers present in the final record."""
    lines = [f"**status:** {status}" + (f", {final.get('round')} rounds" if final else ""), ""]
    rows = [(tag, note) for tag, note in SUMMARY_ROWS if final and isinstance(final.get(tag), (int, float))]
    if not final or not rows:  # rows is empty without a final record
        return "\n".join(lines + ["no headline metrics were recorded"])
    lines += ["| metric | round 0 | final | |", "|---|---|---|---|"]
    for tag, note in rows:
        start = (first or {}).get(tag)
        shown = f"{start:.4g}" if isinstance(start, (int, float)) else "–"
        lines.append(f"| `{tag}` | {shown} | {float(final[tag]):.4g} | {note} |")
    return "\n".join(lines)
