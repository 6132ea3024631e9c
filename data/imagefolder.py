"""ImageFolder trees -> one uint8 tensor per split, decoded once and cached on disk.

Layout: ``<split>/<class>/**/<image>``, classes sorted by name as torchvision's ImageFolder does.
JPEGs are decoded in batches by torchvision.io.decode_jpeg (libjpeg-turbo), measured about 3x
faster than PIL per image on CIFAR-sized files; other formats, and JPEGs it rejects, go
through PIL. Every image becomes RGB.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
JPEG_EXTENSIONS = (".jpg", ".jpeg")
CACHE_FORMAT = 1  # bump when the cached content changes meaning
CHUNK = 1024       # files read and decoded per batch
MAX_LISTED = 20    # bad files named in one error


@dataclass
class SplitFiles:
    """The image files of one split: paths relative to ``directory``, labels, and a fingerprint."""

    directory: str
    classes: list[str]
    paths: list[str]
    labels: list[int]
    fingerprint: str  # sha256 of every file's name, size and mtime


def find_classes(directory: str) -> list[str]:
    """Sorted class folder names under ``directory`` (hidden folders skipped)."""
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def scan_split(directory: str, classes: list[str] | None = None) -> SplitFiles:
    """List ``directory/<class>/**/*.{jpg,png,...}``; ``classes`` fixes the label order (from train).

    Raises ValueError for a class folder without images or one that ``classes`` does not know.
    """
    found = find_classes(directory)
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{directory} has class folders {unknown} that train/ does not have; "
                         f"every split must use train/'s classes {classes}")
    digest = hashlib.sha256()
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(directory, name)
        if not os.path.isdir(class_dir):
            continue  # a val/test split may lack a class
        files = []
        for parent, dirs, names in os.walk(class_dir, followlinks=True):
            dirs.sort()
            files += [os.path.join(parent, n) for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
        if not files:
            raise ValueError(f"class folder {class_dir} has no images (expected files ending in "
                             f"{', '.join(IMG_EXTENSIONS)}); remove the folder or add images")
        for path in files:
            stat = os.stat(path)
            rel = os.path.relpath(path, directory)
            digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            paths.append(rel)
            labels.append(label)
    if not paths:
        raise ValueError(f"{directory} has no class folders; expected {directory}/<class>/<image files>")
    return SplitFiles(directory, list(classes), paths, labels, digest.hexdigest())


def _read_bytes(path: str) -> Tensor:
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


def _decode_one(path: str, data: Tensor) -> Tensor:
    """(3, H, W) uint8; raises on a file neither torchvision nor PIL can decode."""
    if path.lower().endswith(JPEG_EXTENSIONS) and data.numel():
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # not baseline/progressive JPEG after all (or broken): let PIL decide
    with Image.open(path) as image:
        image.load()  # raises on truncated files (PIL's LOAD_TRUNCATED_IMAGES is False by default)
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def _decode_chunk(paths: list[str], datas: list[Tensor]) -> list[Tensor | Exception]:
    jpeg = [i for i, p in enumerate(paths) if p.lower().endswith(JPEG_EXTENSIONS) and datas[i].numel()]
    out: list[Tensor | Exception | None] = [None] * len(paths)
    if jpeg:
        try:  # one call for the whole chunk; one bad file fails it, then each file goes alone
            for i, image in zip(jpeg, decode_jpeg([datas[i] for i in jpeg], mode=ImageReadMode.RGB)):
                out[i] = image
        except RuntimeError:
            pass
    for i, image in enumerate(out):
        if image is None:
            try:
                out[i] = _decode_one(paths[i], datas[i])
            except Exception as err:  # PIL raises OSError, UnidentifiedImageError, ValueError, ...
                out[i] = err
    return out


def decode_images(files: SplitFiles, image_size: tuple[int, int] | None = None) -> Tensor:
    """Decode every file of ``files`` into one uint8 tensor (N, 3, H, W), printing progress.

    Without ``image_size`` all images must share one size; with it, others are resized
    (antialiased bilinear). Every file is attempted first, then a ValueError lists the files
    that failed to decode (up to 20 of them), or else names two files of different sizes.
    """
    n, start = len(files.paths), time.perf_counter()
    images: Tensor | None = None
    reference: tuple[str, tuple[int, int]] | None = None
    mismatch: str | None = None
    bad: list[str] = []
    next_report = 0
    paths = [os.path.join(files.directory, p) for p in files.paths]
    # Sequential on purpose: read threads measured slower (GIL), and a 2-process pool only 1.4x
    # faster on a cold page cache, not worth fork-safety trouble for a once-per-machine step.
    for lo in range(0, n, CHUNK):
        chunk = paths[lo:lo + CHUNK]
        rows, decoded = [], []
        for offset, result in enumerate(_decode_chunk(chunk, [_read_bytes(p) for p in chunk])):
            path = chunk[offset]
            if isinstance(result, Exception):
                bad.append(f"{path} ({type(result).__name__}: {result})")
                continue
            size = tuple(result.shape[1:])
            if reference is None:
                reference = (path, size)
            if image_size is not None and size != tuple(image_size):
                result = TF.resize(result, list(image_size), antialias=True)
            elif image_size is None and size != reference[1]:
                mismatch = mismatch or (f"images have different sizes: {reference[0]} is {reference[1][0]}x"
                                        f"{reference[1][1]} but {path} is {size[0]}x{size[1]} (HxW); pass "
                                        f"image_size=[H, W] (data.image_size=...) to resize them all")
                continue
            rows.append(lo + offset)
            decoded.append(result)
        if decoded:
            if images is None:
                images = torch.empty((n, 3, *decoded[0].shape[1:]), dtype=torch.uint8)
            images[rows] = torch.stack(decoded)  # one copy per chunk, not one per image
        done = lo + len(chunk)
        if done >= next_report or done == n:  # about ten lines per split
            print(f"convzoo: decoded {done}/{n} images of {files.directory} ({time.perf_counter() - start:.1f} s)",
                  file=sys.stderr, flush=True)
            next_report = done + max(n // 10, 1)
    if bad:
        listed = "\n  ".join(bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise ValueError(f"{len(bad)} of {n} images under {files.directory} could not be decoded "
                         f"(corrupt or truncated); remove or replace them:\n  {listed}{more}")
    if mismatch:
        raise ValueError(mismatch)
    return images


def cache_path(cache_dir: str, files: SplitFiles, image_size: tuple[int, int] | None) -> str:
    """Cache file for this split: keyed by its absolute path, image size, classes and file fingerprint."""
    key = json.dumps({"format": CACHE_FORMAT, "directory": os.path.abspath(files.directory),
                      "image_size": list(image_size) if image_size else None, "classes": files.classes,
                      "files": files.fingerprint}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root_name = os.path.basename(os.path.dirname(os.path.abspath(files.directory)))
    split = os.path.basename(os.path.abspath(files.directory))
    return os.path.join(cache_dir, f"{root_name}-{split}-{digest}.pt")


def load_cache(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if entry.get("format") == CACHE_FORMAT:
            return entry
    except Exception as err:  # a half-written or foreign file: decode again
        warnings.warn(f"ignoring unreadable cache file {path}: {err}")
    return None


def save_cache(path: str, entry: dict) -> None:
    """Write atomically (temporary file + rename); a cache that cannot be written only warns."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(entry, tmp)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not write the decoded-image cache {path} ({err}); the next run decodes again. "
                      f"Set cache_dir (data.cache_dir=...) or CONVZOO_CACHE_DIR to a writable folder.")
        if os.path.exists(tmp):
            os.remove(tmp)
