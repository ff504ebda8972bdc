"""`flashsale soak` end to end, briefly: every process sampled, a plot and a verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from matplotlib.image import imread


def test_a_short_soak_samples_every_process_plots_and_passes(tmp_path: Path) -> None:
    # Its own embedded broker, as `flashsale soak` starts one: whose memory it samples too.
    out = tmp_path / "soak"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration",
            "soak",
            "--minutes",
            "0.2",
            "--sample-s",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "soak passed" in done.stdout
    doc = json.loads((out / "soak.json").read_text())
    assert doc["passed"] is True and doc["problems"] == []
    assert doc["summary"]["reconciled"] is True
    assert doc["checkouts_accepted"] > 0  # the gateway took part
    samples = doc["samples"]
    assert len(samples) >= 8
    for name in ("broker", "worker", "gateway", "producer"):
        assert all(s["rss_mb"][name] and s["rss_mb"][name] > 10 for s in samples), name
    assert any(s["lag"] is not None for s in samples)
    assert any(s["p99_ms"] for s in samples)
    png = out / "soak.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(png).shape[:2]
    assert (width, height) == (1000, 800)
