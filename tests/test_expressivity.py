"""Trajectory-length expressivity: geometry helpers, random networks, the sweep and its script."""

from __future__ import annotations

import csv
import importlib
import math

import numpy as np
import pytest
import torch

from ltc_rl.studies.trajectory_length import (TrajectoryConfig, arc_length, build_network, circle_inputs,
                                              latent_trajectories, measure, pca_project, sweep, sweep_table)


def test_arc_length_of_the_input_circle():
    inputs, dt = circle_inputs(1000)
    assert inputs.shape == (1, 1000, 2) and math.isclose(dt, 2 * math.pi / 1000)
    assert arc_length(inputs[0].numpy()) == pytest.approx(2 * math.pi, rel=1e-4)
    assert arc_length(np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])) == pytest.approx(6.0)


def test_pca_projection_keeps_a_planar_curve():
    t = np.linspace(0, 2 * np.pi, 200)
    plane = np.stack([np.cos(t), 2 * np.sin(t)], axis=1)
    embedded = plane @ np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))[0][:2]  # rotate into 5-D
    projected = pca_project(embedded)
    assert projected.shape == (200, 2)
    assert arc_length(projected) == pytest.approx(arc_length(plane), rel=1e-9)
    assert pca_project(np.zeros((4, 1))).shape == (4, 2)


@pytest.mark.parametrize("kind", ["ltc", "ctrnn", "node"])
def test_stacked_random_networks_give_finite_positive_lengths(kind):
    config = TrajectoryConfig(kind=kind, width=12, depth=3, sigma_w=4.0, steps=50, seed=3)
    layers = build_network(config)
    assert len(layers) == 3 and layers[0].input_size == 2 and layers[1].input_size == 12
    inputs, dt = circle_inputs(config.steps)
    states = latent_trajectories(layers, inputs, dt)
    assert [s.shape for s in states] == [(50, 12)] * 3 and all(torch.isfinite(s).all() for s in states)
    row = measure(config)
    assert 0 < row["length_pca"] <= row["length_full"] + 1e-9 and math.isfinite(row["length_full"])
    assert measure(config) == row  # deterministic in the seed


def test_weight_scale_changes_the_ltc_trajectory():
    lengths = [measure(TrajectoryConfig(kind="ltc", width=16, sigma_w=s, steps=50))["length_full"] for s in (1, 8)]
    assert lengths[1] != pytest.approx(lengths[0], rel=1e-3)


def test_sweep_covers_every_axis_model_and_sample():
    rows = sweep(TrajectoryConfig(width=8, steps=40), {"width": (4, 8), "solver": ("fused", "euler")}, samples=2,
                 progress=False)
    assert len(rows) == 2 * 2 * 3 * 2
    assert all(r["length_pca"] > 0 and math.isfinite(r["length_pca"]) for r in rows)
    table = sweep_table(rows)
    assert table.count("\n") == 2 + 4 and "LTC / CT-RNN" in table and "| solver | euler |" in table
    with pytest.raises(ValueError, match="cannot sweep"):
        sweep(axes={"colour": (1,)}, samples=1, progress=False)
    with pytest.raises(ValueError, match="unknown solver"):
        TrajectoryConfig(solver="leapfrog")


def test_trajectory_length_script_writes_table_csv_and_plot(tmp_path):
    main = importlib.import_module("ltc_rl.cli.trajectory_length").main
    main(["--widths", "6,12", "--depths", "1,2", "--sigmas", "2", "--solvers", "fused,rk4", "--width", "6",
          "--steps", "40", "--samples", "1", "--out", str(tmp_path)])
    text = (tmp_path / "trajectory_length.md").read_text()
    assert "## Length of the 2-D PCA projection" in text and "| depth | 2 |" in text
    with (tmp_path / "trajectory_length.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == (2 + 2 + 1 + 2) * 3 and all(float(r["length_full"]) > 0 for r in rows)
    assert (tmp_path / "trajectory_length.png").read_bytes()[:4] == b"\x89PNG"
