"""Crop and align a FaceScrub or CelebA folder into an ImageFolder tree, as Struppek et al. (2024) does.

Faces are detected with facenet-pytorch's MTCNN (its weights ship in the wheel), cropped
with a margin, resized to a square and written as ``OUT/<identity>/<image>.png``. The pass
is resumable: images already written are skipped, so an interrupted run continues where it
stopped. Images without a detected face are listed in ``OUT/no_face.txt``.

    # FaceScrub-style input: IN/<identity>/<image>.jpg
    .venv/bin/python scripts/prepare_faces.py facescrub IN OUT --size 224
    # CelebA: IN/img_align_celeba/*.jpg with IN/identity_CelebA.txt
    .venv/bin/python scripts/prepare_faces.py celeba IN OUT --size 224
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from rich.progress import Progress

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def facescrub_items(root: Path) -> Iterator[tuple[Path, str]]:
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in SUFFIXES:
                yield path, folder.name


def celeba_items(root: Path) -> Iterator[tuple[Path, str]]:
    identities = root / "identity_CelebA.txt"
    for line in identities.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            yield root / "img_align_celeba" / parts[0], parts[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["facescrub", "celeba"])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=224, help="output side length in pixels")
    parser.add_argument("--margin", type=int, default=20, help="MTCNN margin in pixels around the face box")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    if not args.source.is_dir():
        print(f"error: {args.source} is not a folder; pass the dataset's root folder", file=sys.stderr)  # noqa: T201
        return 2
    if args.kind == "celeba" and not (args.source / "identity_CelebA.txt").is_file():
        print(f"error: {args.source}/identity_CelebA.txt is missing; pass CelebA's root folder", file=sys.stderr)  # noqa: T201
        return 2
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(image_size=args.size, margin=args.margin, post_process=False, device=args.device)
    items = list(facescrub_items(args.source) if args.kind == "facescrub" else celeba_items(args.source))
    args.out.mkdir(parents=True, exist_ok=True)
    no_face = args.out / "no_face.txt"
    skipped = set(no_face.read_text().splitlines()) if no_face.exists() else set()
    written = 0
    with Progress() as progress, no_face.open("a") as misses:
        task = progress.add_task("cropping faces", total=len(items))
        for path, identity in items:
            target = args.out / identity / f"{path.stem}.png"
            if target.exists() or str(path) in skipped or not path.exists():
                progress.advance(task)
                continue
            with Image.open(path) as img:
                face = mtcnn(img.convert("RGB"))
            if face is None:
                misses.write(f"{path}\n")
            else:
                target.parent.mkdir(exist_ok=True)
                tmp = target.with_suffix(".tmp.png")
                Image.fromarray(face.permute(1, 2, 0).clamp(0, 255).byte().numpy()).save(tmp)
                tmp.replace(target)  # a finished file or none: safe to resume
                written += 1
            progress.advance(task)
    print(f"wrote {written} faces to {args.out}; train with: fedls simulate --dataset imagefolder --data-dir {args.out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
