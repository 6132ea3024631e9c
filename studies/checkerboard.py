"""Checkerboard artifacts of transposed convolutions (Odena, Dumoulin & Olah 2016, "Deconvolution and
Checkerboard Artifacts", Distill): what the study measures while its autoencoders train.

``CheckerboardMonitor`` logs ``decoder/checkerboard_score`` (the overlap unevenness of the decoder's
architecture, ``convzoo.models.layers.checkerboard_score``: weights do not enter it) and
``val/checkerboard_rms`` (the trained weights' checkerboard: the RMS of the decoder's output on a
spatially constant code), and at fit end saves the report's figure data in the run folder:
``reconstructions.png`` (lossless: validation images over their reconstructions) and
``flat_code_pattern.json`` (the pattern on a flat code, in grey levels). Both are small results, not
tensors, so `convzoo study record` keeps them in git and the figure regenerates on a fresh clone.

The report reads the sweep's autoencoder runs (each run folder's metrics.json and those two files)
and gives a table, one row per decoder, and a figure: the same validation images, originals and each
decoder's reconstructions, and the pattern each decoder paints on a spatially constant code.
"""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchvision.io import decode_png, read_file, write_png

from convzoo.models.layers import checkerboard_score
from convzoo.training.reporting import plt
from convzoo.training.runs import AUTOENCODER, Run
from convzoo.training.tables import EMPTY, markdown_table

TITLE = "Checkerboard artifacts of transposed convolutions (Odena et al. 2016)"
IMAGES, PATTERN = "reconstructions.png", "flat_code_pattern.json"
RECORD_FILES = (IMAGES, PATTERN)  # the figure's data: `convzoo study record` keeps them (~51 KB a run)
PATTERN_CROP = 32  # pixels a side of the flat-code pattern kept: a few periods, at the images' scale
TASK = AUTOENCODER
FIGURE_ALT = "checkerboard: reconstructions by decoder"
COLUMNS = ("decoder", "val loss (MSE)", "val PSNR (dB)", "checkerboard score", "flat-code pattern RMS",
           "params", "MACs", "epochs", "fit (min)")


@torch.no_grad()
def flat_code_pattern(decoder: nn.Module, code: torch.Tensor, size: int = 16) -> torch.Tensor:
    """The decoder's output on the spatially constant code ``code`` (C,) tiled to ``size x size``,
    with a quarter of each side cropped (where zero padding reaches): (C_out, size f / 2, size f / 2).

    Evenly spreading upsampling (resize-conv) turns a constant input into a constant image; a
    transposed conv paints a period-2^n pattern wherever its trained taps do not sum to the same
    value in every output phase, the weight-dependent side of Odena et al.'s overlap argument.
    """
    param = next(decoder.parameters())
    z = code.to(param).view(1, -1, 1, 1).expand(1, -1, size, size)  # (1, C, size, size)
    out = decoder(z)[0].float()  # (C_out, size f, size f)
    h, w = out.shape[-2:]
    return out[:, h // 4: h - h // 4, w // 4: w - w // 4]


def pattern_rms(pattern: torch.Tensor, std) -> torch.Tensor:
    """RMS over pixels and channels of ``pattern`` minus its per-channel mean, in 8-bit grey levels
    (``pattern`` is in normalised units: one unit is ``255 std_c`` grey levels in channel c)."""
    scale = torch.tensor(std, dtype=pattern.dtype, device=pattern.device).view(-1, 1, 1) * 255
    return ((pattern - pattern.mean((1, 2), keepdim=True)) * scale).square().mean().sqrt()


def save_figure_data(folder: Path, originals: torch.Tensor, reconstructions: torch.Tensor, decoder: str,
                     pattern: torch.Tensor) -> None:
    """Write ``folder/reconstructions.png`` (uint8 (N, 3, H, W) originals and reconstructions, one row
    each, lossless) and ``folder/flat_code_pattern.json`` (``pattern`` (3, h, w) in grey levels, its
    top-left ``PATTERN_CROP`` pixels a side, to 0.01)."""
    if originals.shape != reconstructions.shape or originals.dtype != torch.uint8:
        raise ValueError(f"originals and reconstructions must be uint8 tensors of one shape, got "
                         f"{originals.dtype} {tuple(originals.shape)} and {tuple(reconstructions.shape)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip = torch.stack([originals, reconstructions]).permute(2, 0, 3, 1, 4)  # (3, 2, H, N, W)
    c, _, h, n, w = strip.shape
    write_png(strip.reshape(c, 2 * h, n * w).contiguous(), str(folder / IMAGES), compression_level=9)
    crop = pattern[:, :PATTERN_CROP, :PATTERN_CROP].double()  # float64: 0.01 steps print as written
    (folder / PATTERN).write_text(json.dumps({"decoder": decoder, "num_images": n, "unit": "8-bit grey levels",
                                              "pattern": (crop * 100).round().div(100).tolist()}) + "\n")


def load_figure_data(folder: Path) -> dict:
    """What ``save_figure_data`` wrote: ``originals`` and ``reconstructions`` (N, 3, H, W) uint8,
    ``decoder`` and ``pattern`` (3, h, w) float."""
    folder = Path(folder)
    missing = [name for name in RECORD_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"no {' or '.join(missing)} in {folder}: the run did not finish")
    meta = json.loads((folder / PATTERN).read_text())
    strip = decode_png(read_file(str(folder / IMAGES)))  # (3, 2H, N W)
    c, two_h, nw = strip.shape
    n = meta["num_images"]
    pairs = strip.view(c, 2, two_h // 2, n, nw // n).permute(1, 3, 0, 2, 4)  # (2, N, 3, H, W)
    return {"originals": pairs[0].contiguous(), "reconstructions": pairs[1].contiguous(),
            "decoder": meta["decoder"], "pattern": torch.tensor(meta["pattern"])}


class CheckerboardMonitor(L.Callback):
    """For an autoencoder with ``encoder`` and ``decoder`` parts, trained with ``task=autoencode``.

    ``folder``: where the fit's end writes the first ``num_images`` validation images, their
    reconstructions (uint8 pixels) and the flat-code pattern (grey levels): the report's figure
    (``save_figure_data``)."""

    def __init__(self, folder: str | None = None, num_images: int = 8) -> None:
        self.folder, self.num_images = folder, num_images
        self._mean_code: torch.Tensor | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        net = pl_module.net
        if not (hasattr(net, "encoder") and hasattr(net, "decoder")):
            raise ValueError(f"the checkerboard monitor needs an autoencoder with encoder and decoder parts, "
                             f"got {type(net).__name__}; use it with task=autoencode (experiment=checkerboard)")
        self.overlap_score = checkerboard_score(net.decoder)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:  # unshuffled: the same images every epoch
            with torch.no_grad():
                self._mean_code = pl_module.net.encoder(batch[0]).float().mean((0, 2, 3))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("decoder/checkerboard_score", self.overlap_score)
        if self._mean_code is not None:
            pattern = flat_code_pattern(pl_module.net.decoder, self._mean_code)
            pl_module.log("val/checkerboard_rms", pattern_rms(pattern, pl_module.std), sync_dist=True)

    @torch.no_grad()
    def on_fit_end(self, trainer, pl_module) -> None:
        if self.folder is None or not trainer.is_global_zero or trainer.datamodule is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        x, _ = next(iter(trainer.datamodule.val_dataloader()))
        x = x.to(pl_module.device)
        recon = pl_module(x)
        pattern = flat_code_pattern(pl_module.net.decoder, pl_module.net.encoder(x).float().mean((0, 2, 3)))
        scale = torch.tensor(pl_module.std, device=pattern.device).view(-1, 1, 1) * 255
        n = self.num_images

        def as_uint8(t: torch.Tensor) -> torch.Tensor:
            return (pl_module.to_pixels(t[:n]) * 255).round().to(torch.uint8).cpu()

        save_figure_data(Path(self.folder), as_uint8(x), as_uint8(recon),
                         getattr(pl_module.net, "decoder_kind", type(pl_module.net.decoder).__name__),
                         ((pattern - pattern.mean((1, 2), keepdim=True)) * scale).cpu())
        pl_module.train(was_training)


def _row(metrics: dict) -> list[str]:
    def num(key: str, fmt: str) -> str:
        return format(metrics[key], fmt) if metrics.get(key) is not None else EMPTY

    return [f"`{metrics['decoder']}`", num("val/loss", ".4f"), num("val/psnr", ".2f"),
            num("decoder/checkerboard_score", ".2f"), num("val/checkerboard_rms", ".2f"),
            f"{metrics['params'] / 1e3:.1f}k", f"{metrics['macs'] / 1e6:.2f}M", str(metrics.get("epochs", EMPTY)),
            f"{metrics['fit_seconds'] / 60:.1f}" if "fit_seconds" in metrics else EMPTY]


def checkerboard_figure(saved: list[dict]):
    """Rows: originals, then one per decoder; columns: the validation images, then the decoder's
    pattern on a flat code (deviation from its mean, one gain for all rows, grey = 0)."""
    n = len(saved[0]["originals"])
    peak = max(float(s["pattern"].abs().max()) for s in saved)
    gain = 100.0 / peak if peak > 1e-3 else 1.0  # the strongest pattern spans +-100 grey levels
    fig, axes = plt.subplots(len(saved) + 1, n + 1, figsize=(1.25 * (n + 1), 1.35 * (len(saved) + 1)),
                             dpi=120, squeeze=False)
    rows = [("original", saved[0]["originals"], None)]
    rows += [(s["decoder"], s["reconstructions"], s["pattern"]) for s in saved]
    for r, (label, images, pattern) in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(images[c].permute(1, 2, 0).numpy(), interpolation="nearest")
        if pattern is not None:
            axes[r, n].imshow(((128 + gain * pattern).clamp(0, 255) / 255).permute(1, 2, 0).numpy(),
                              interpolation="nearest")
        axes[r, 0].set_ylabel(label, fontsize=8)
    axes[0, n].set_title(f"flat code\n(x{gain:.0f}, grey = 0)", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle("validation images and their reconstructions, by decoder", fontsize=9)
    fig.tight_layout()
    return fig


def report(runs: list[Run], out: Path, **_) -> tuple[str, list[Path]]:
    """The table of the sweep's autoencoder runs and ``out/checkerboard.png``."""
    saved = [load_figure_data(run.path) for run in runs]
    for run, s in zip(runs[1:], saved[1:]):
        if not torch.equal(s["originals"], saved[0]["originals"]):
            raise ValueError(f"{run.path} reconstructed other validation images than {runs[0].path} (other data or "
                             "seed): compare runs of one sweep")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = checkerboard_figure(saved)
    fig.savefig(out / "checkerboard.png")
    plt.close(fig)
    table = markdown_table(COLUMNS, [_row(run.metrics) for run in runs])
    notes = ("checkerboard score: unevenness (max - min) / max of the decoder's kernel overlap, from its "
             "architecture (`models.layers.checkerboard_score`; 0 = even). Flat-code pattern RMS: the "
             "trained decoder's output on a spatially constant code (the mean code of a validation batch), "
             "RMS deviation from flat, in 8-bit grey levels. PSNR on [0, 1] pixels, per image, averaged.")
    return table + "\n\n" + notes, [out / "checkerboard.png"]
