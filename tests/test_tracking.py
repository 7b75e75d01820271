"""The run's TensorBoard record: custom-scalars layout, config text, HParams, per-client values
and labelled figures, read back from the event files the way TensorBoard reads them."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from fedls.config import RunConfig
from fedls.federation.figures import image_grid, render, scale_factor, tile, to_display, upscale
from fedls.federation.tracking import (
    FIRST_SCREEN,
    LAYOUT,
    RoundTracker,
    anchored,
    build_layout,
    hparam_values,
    tensorboard_url,
)
from fedls.run_dir import RunDirectory

LG = "leakage/gradient/"
MI = "leakage/model_inversion/"


def make_run(tmp_path: Path, name: str = "run", **overrides: object) -> RunDirectory:
    config = RunConfig(run_dir=str(tmp_path), name=name, clients=4, rounds=2, alpha=-0.05, seed=7, defense="none", **overrides)
    return RunDirectory.create(config)


def simulate_rounds(tracker: RoundTracker, psnr: bool = False) -> None:
    """What the server and observers log: round 0 utility only; round 1 utility, bookkeeping,
    gradient leakage with per-client values and a diagnostic; round 2 adds model inversion."""
    tracker.start_round(0)
    tracker.add({"accuracy": 0.1, "loss": 2.3}, prefix="global/")
    tracker.flush_round()
    for rnd in (1, 2):
        tracker.start_round(rnd)
        tracker.add({"accuracy": 0.5 + 0.2 * rnd, "loss": 1.0 / rnd}, prefix="global/")
        tracker.add({"num-clients": 4.0, "missing": 0.0}, prefix="clients/")
        tracker.scalars({f"{LG}label_count_accuracy": 1.0, f"{LG}label_count_mae": 0.0, f"{LG}label_count_mae_chance": 2.4,
                         "diagnostics/gradient/claimed_success_rate": 1.0, "time/round_seconds": 1.5})
        tracker.per_client("gradient/count_mae", {0: 0.0, 1: 0.5, 2: 0.25, 3: 0.0})
        if psnr:
            tracker.scalars({f"{LG}recon_psnr": 25.0, f"{LG}recon_psnr_hard_label": 11.0, f"{LG}recon_psnr_mean_image": 11.4})
        if rnd == 2:
            tracker.scalars({f"{MI}acc1": 0.6, f"{MI}acc1_low": 0.4, f"{MI}acc1_high": 0.75, f"{MI}baseline_acc1": 0.1})
        tracker.flush_round()


def accumulator(path: Path) -> EventAccumulator:
    events = EventAccumulator(str(path), size_guidance={"tensors": 0, "images": 0, "histograms": 0})
    events.Reload()
    return events


def latest_layout(events: EventAccumulator) -> layout_pb2.Layout:
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    return layout


def chart_tags(chart: layout_pb2.Chart) -> list[str]:
    if chart.HasField("margin"):
        series = chart.margin.series[0]
        return [series.value, series.lower, series.upper]
    return list(chart.multiline.tag)


def test_layout_puts_privacy_vs_utility_first_and_shows_every_scalar(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tracker = RoundTracker(run)
    simulate_rounds(tracker)
    tracker.close()
    events = accumulator(run.path)
    layout = latest_layout(events)
    titles = [c.title for c in layout.category]
    assert titles == [
        "Privacy vs utility", "Utility", "Gradient leakage", "Model-inversion leakage", "Diagnostics", "Bookkeeping"]

    headline = layout.category[0]
    assert [chart_tags(c) for c in headline.chart] == [
        [anchored("global/accuracy")], [anchored(f"{LG}label_count_accuracy")], [f"{MI}acc1", f"{MI}acc1_low", f"{MI}acc1_high"],
    ]
    assert headline.chart[2].HasField("margin")
    # no reconstruction was logged: no empty PSNR chart
    assert not any("recon_psnr" in t for c in layout.category for ch in c.chart for t in chart_tags(ch))

    # every scalar written is on some chart: a multiline regex or an exact margin series (the
    # first-screen copies for Time Series repeat charted tags and are checked below)
    all_scalars = set(events.Tags()["scalars"])
    scalars = {t for t in all_scalars if not t.startswith(FIRST_SCREEN)}
    copies = sorted(t for t in all_scalars if t.startswith(FIRST_SCREEN))
    assert sorted(all_scalars)[0].startswith(FIRST_SCREEN)  # Time Series opens on this group
    assert copies[0] == f"{FIRST_SCREEN}1_test_accuracy" and f"{FIRST_SCREEN}2_model_inversion_acc1" in copies
    assert [e.value for e in events.Scalars(f"{FIRST_SCREEN}1_test_accuracy")] == [
        e.value for e in events.Scalars("global/accuracy")]
    def shown(tag: str) -> bool:
        for category in layout.category:
            for chart in category.chart:
                tags = chart_tags(chart)
                if chart.HasField("margin") and tag in tags or any(re.fullmatch(p, tag) for p in tags):
                    return True
        return False
    assert scalars and all(shown(t) for t in scalars), sorted(t for t in scalars if not shown(t))
    diag = layout.category[titles.index("Diagnostics")]
    assert [chart_tags(c) for c in diag.chart] == [[anchored("diagnostics/gradient/claimed_success_rate")]]


def test_layout_grows_with_new_tags_and_reconstruction_chart_appears_when_logged(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tracker = RoundTracker(run)
    simulate_rounds(tracker, psnr=True)
    tracker.close()
    events = accumulator(run.path)
    layouts = events.Tensors("custom_scalars__config__")
    # rewritten only when a round brought a new chart: round 0, round 1 (leakage), round 2 (MI)
    assert [e.step for e in layouts] == [0, 1, 2]
    first = layout_pb2.Layout()
    first.ParseFromString(layouts[0].tensor_proto.string_val[0])
    assert [c.title for c in first.category] == ["Privacy vs utility", "Utility"]
    headline = latest_layout(events).category[0]
    psnr = [chart_tags(c) for c in headline.chart if any("recon_psnr" in t for t in chart_tags(c))]
    assert psnr == [[anchored(f"{LG}recon_psnr"), anchored(f"{LG}recon_psnr_hard_label"), anchored(f"{LG}recon_psnr_mean_image")]]


def test_layouts_of_two_runs_merge_without_duplicate_charts() -> None:
    # TensorBoard merges the layouts of all runs in a logdir, dropping charts equal in content:
    # a chart must not change its tag list with what a run happened to log
    a = build_layout({"global/accuracy", f"{LG}label_count_mae"})
    b = build_layout({"global/accuracy", f"{LG}label_count_mae_chance"})
    assert a.category[2].title == b.category[2].title == "Gradient leakage"
    assert a.category[2].chart[0] == b.category[2].chart[0]


def test_unknown_tags_land_in_other_and_bad_chart_definitions_are_refused() -> None:
    layout = build_layout({"gradient/success_rate", "global/accuracy"})
    assert layout.category[-1].title == "Other" and layout.category[-1].closed
    assert chart_tags(layout.category[-1].chart[0]) == [anchored("gradient/success_rate")]
    from fedls.federation.tracking import Chart

    with pytest.raises(ValueError, match="margin chart"):
        Chart("x", ("a", "b"), margin=True)
    with pytest.raises(ValueError, match="regex"):
        Chart("x", ("a(b)",))
    assert re.fullmatch(anchored("a.b"), "a.b") and not re.fullmatch(anchored("a.b"), "axb")
    assert {c.title for c in LAYOUT} >= {"Privacy vs utility", "Bookkeeping"}


def test_config_text_and_hparams_session_for_every_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, attacks="gradient")
    tracker = RoundTracker(run)
    simulate_rounds(tracker)
    tracker.finish("complete")
    tracker.finish("failed")  # a second call is ignored: one session end per run
    tracker.close()
    events = accumulator(run.path)

    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("```toml\n") and text.rstrip().endswith("```")
    assert 'dataset = "digits"' in text and "alpha = -0.05" in text and "seed = 7" in text

    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    values = {k: (v.string_value if v.HasField("string_value") else v.number_value) for k, v in start.hparams.items()}
    assert values["dataset"] == "digits" and values["model"] == "cnn" and values["defense"] == "none"
    assert values["alpha"] == pytest.approx(-0.05) and values["clients"] == 4 and values["rounds"] == 2 and values["seed"] == 7
    assert values["attacks"] == "gradient" and values["gradient_threat"] == "honest" and values["defense_options"] == "{}"
    assert start.group_name == run.path.name

    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[0] == "global/accuracy" and f"{LG}label_count_accuracy" in metrics and f"{MI}acc1" in metrics
    assert {h.name for h in experiment.hparam_infos} == set(values)
    # the HParams table shows each metric's last scalar: the final round's
    assert events.Scalars("global/accuracy")[-1].value == pytest.approx(0.9)

    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS

    summary = events.Tensors("summary/text_summary")
    assert len(summary) == 1  # the second finish() wrote nothing and summary[0].step == 2
    body = summary[0].tensor_proto.string_val[0].decode()
    assert "**status:** complete" in body and f"| `{LG}label_count_mae` | – | 0 |" in body
    assert "| `global/accuracy` | 0.1 | 0.9 | ↑ better utility |" in body


def test_hparams_of_an_interrupted_run_and_tolerated_missing_config(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tracker = RoundTracker(run)
    tracker.start_round(0)
    tracker.add({"accuracy": 0.1}, prefix="global/")
    tracker.flush_round()
    tracker.finish("interrupted")
    tracker.close()
    content = accumulator(run.path).PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_UNKNOWN  # HParams has no 'aborted'

    bare = tmp_path / "bare"
    bare.mkdir()
    tracker = RoundTracker(RunDirectory(bare))  # no config.toml: scalars still work, no HParams
    tracker.start_round(0)
    tracker.add({"accuracy": 0.2}, prefix="global/")
    tracker.flush_round()
    tracker.close()
    events = accumulator(bare)
    assert events.Scalars("global/accuracy")[0].value == pytest.approx(0.2)
    with pytest.raises(KeyError):
        events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)


def test_hparam_values_leave_out_what_the_config_lacks() -> None:
    values = hparam_values({"dataset": "digits", "alpha": 0.1, "seed": 3, "gradient_attack": {"threat": "malicious-fedsgd"}})
    assert values == {
        "dataset": "digits", "alpha": 0.1, "seed": 3.0, "gradient_threat": "malicious-fedsgd", "defense_options": "{}"}


def test_per_client_values_go_to_jsonl_and_histograms_not_scalar_cards(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tracker = RoundTracker(run)
    simulate_rounds(tracker)
    tracker.close()
    events = accumulator(run.path)
    scalars = events.Tags()["scalars"]
    assert not any("per_client" in t or "count_mae/" in t or re.search(r"client[_ -]?\d", t) for t in scalars), scalars
    assert "per_client/gradient/count_mae" in events.Tags()["histograms"]
    assert [e.step for e in events.Histograms("per_client/gradient/count_mae")] == [1, 2]
    records = run.metrics()
    assert records[1]["per_client"]["gradient/count_mae"] == {"0": 0.0, "1": 0.5, "2": 0.25, "3": 0.0}
    assert "per_client" not in records[0]


def test_figures_are_written_as_images(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tracker = RoundTracker(run)
    tracker.start_round(3)
    digits = torch.rand(2, 1, 8, 8)
    figure = image_grid([[digits[0], digits[1]]], col_labels=["client 0", "client 1"], captions=[["PSNR 20.0 dB", None]])
    expected = render(figure).shape
    tracker.figure("leakage/gradient/reconstructions", figure)
    tracker.flush_round()
    tracker.close()
    events = accumulator(run.path)
    assert "leakage/gradient/reconstructions" in events.Tags()["images"]
    image = events.Images("leakage/gradient/reconstructions")[0]
    assert image.step == 3 and (image.height, image.width) == expected[:2]
    png = Image.open(io.BytesIO(image.encoded_image_string))
    assert png.format == "PNG" and png.size == (expected[1], expected[0])


def test_image_grid_enlarges_small_images_with_nearest_neighbour_and_labels_them() -> None:
    checker = (np.indices((8, 8)).sum(0) % 2).astype(np.float64)
    rgb = torch.rand(3, 8, 8)
    figure = image_grid(
        [[torch.tensor(checker).unsqueeze(0), None], [rgb, torch.zeros(1, 8, 8)]],
        row_labels=["original", "soft-label\nreconstruction"], col_labels=["client 0\nclass 7", "client 1"],
        captions=[[None, None], ["PSNR 21.3 dB", "PSNR 9.8 dB"]], title="round 4",
    )
    axes = figure.axes
    first = axes[0].images[0]
    assert first.get_interpolation() == "nearest"
    assert np.array_equal(np.asarray(first.get_array()), np.kron(checker, np.ones((12, 12))))  # 8 px → 96 px blocks
    assert axes[0].get_ylabel() == "original" and axes[2].get_ylabel() == "soft-label\nreconstruction"
    assert axes[0].get_title() == "client 0\nclass 7" and axes[1].get_title() == "client 1"
    assert axes[2].get_xlabel() == "PSNR 21.3 dB" and axes[3].get_xlabel() == "PSNR 9.8 dB"
    assert not axes[1].images  # the empty cell draws nothing
    assert np.asarray(axes[2].images[0].get_array()).shape == (96, 96, 3)
    assert figure.get_suptitle() == "round 4"
    pixels = render(figure)
    assert pixels.shape[0] >= 2 * 96 and pixels.shape[1] >= 2 * 96  # each 8×8 image ≥ 96 px on screen


def test_image_helpers() -> None:
    assert np.array_equal(upscale(np.array([[0.0, 1.0]]), 2), np.array([[0, 0, 1, 1], [0, 0, 1, 1]]))
    assert scale_factor(8, 8, 96, 640) == 12 and scale_factor(160, 160, 96, 640) == 1 and scale_factor(8, 200, 96, 640) == 3
    assert np.allclose(to_display(torch.tensor([[-1.0, 1.0]]), (-1.0, 1.0)), [[0.0, 1.0]])
    assert np.allclose(to_display(np.array([[2.0, 4.0]]), None), [[0.0, 1.0]])  # min-max stretch
    assert np.allclose(to_display(np.full((2, 2), 3.0), None), 0.0)  # constant image: no NaN
    strip = tile([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], slots=3)
    assert strip.shape == (2, 3 * 2 + 2)
    assert np.all(strip[:, 2] == 1.0) and np.all(strip[:, 3:5] == 1.0) and np.all(strip[:, :2] == 0.0)
    assert tile([torch.zeros(1, 2, 2)] * 4, columns=2).shape == (5, 5)
    with pytest.raises(ValueError, match="one shape"):
        tile([torch.zeros(1, 2, 2), torch.zeros(1, 3, 3)])
    with pytest.raises(ValueError, match="cannot show"):
        to_display(torch.zeros(2, 4, 4))


def test_tensorboard_url_pins_headline_cards() -> None:
    url = tensorboard_url(6123, pinned=("global/accuracy", f"{MI}acc1"))
    assert url.startswith("http://localhost:6123/?pinnedCards=") and url.endswith("#timeseries")
    from urllib.parse import parse_qs, urlparse

    cards = json.loads(parse_qs(urlparse(url).query)["pinnedCards"][0])
    assert cards == [{"plugin": "scalars", "tag": "global/accuracy"}, {"plugin": "scalars", "tag": f"{MI}acc1"}]
