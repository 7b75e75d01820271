"""scripts/prepare_faces.py: crops with MTCNN, records images without a face, resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).parents[1] / "scripts" / "prepare_faces.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_faceless_images_are_listed_and_skipped_on_resume(tmp_path: Path) -> None:
    source, out = tmp_path / "facescrub", tmp_path / "crops"
    for identity in ("ann", "bob"):
        (source / identity).mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(source / identity / "0.jpg")
    first = _run("facescrub", str(source), str(out), "--size", "32")
    assert first.returncode == 0, first.stderr
    assert sorted((out / "no_face.txt").read_text().split()) == sorted(str(p) for p in source.rglob("*.jpg"))
    assert "wrote 0 faces" in first.stdout
    second = _run("facescrub", str(source), str(out), "--size", "32")
    assert second.returncode == 0
    assert len((out / "no_face.txt").read_text().split()) == 2  # not listed twice: skipped on resume


def test_missing_source_is_exit_2(tmp_path: Path) -> None:
    result = _run("celeba", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
