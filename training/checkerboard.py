"""The checkerboard study's report: ``python -m training.checkerboard <sweep folder> [--out DIR]``.

Reads the runs of ``python train.py -m experiment=checkerboard`` (each run folder's metrics.json
and reconstructions.pt, written by ``training.autoencoder``) and gives a markdown table, one row
per decoder, and a figure: the same validation images, originals and each decoder's
reconstructions, and the pattern each decoder paints on a spatially constant code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from convzoo.models.serialization import safe_torch_load

from .reporting import plt
from .runs import AUTOENCODER, find_runs
from .tables import EMPTY, markdown_table

COLUMNS = ("decoder", "val loss (MSE)", "val PSNR (dB)", "checkerboard score", "flat-code pattern RMS",
           "params", "MACs", "epochs", "fit (min)")


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
            h, w = pattern.shape[-2:]
            crop = pattern[:, :min(h, 32), :min(w, 32)]  # a few periods, at the images' scale
            axes[r, n].imshow(((128 + gain * crop).clamp(0, 255) / 255).permute(1, 2, 0).numpy(),
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


def report_checkerboard(sweep_dir: Path, out_dir: Path) -> str:
    """Markdown table of the sweep's autoencoder runs; writes ``out_dir/checkerboard.png``."""
    runs = find_runs(Path(sweep_dir), task=AUTOENCODER)
    if not runs:
        raise FileNotFoundError(f"no autoencoder runs (metrics.json with a 'decoder' entry) under {sweep_dir}; "
                                "run python train.py -m experiment=checkerboard first")
    missing = [str(run.path) for run in runs if not (run.path / "reconstructions.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"no reconstructions.pt in {', '.join(missing)}: the run did not finish")
    saved = [safe_torch_load(run.path / "reconstructions.pt") for run in runs]
    for run, s in zip(runs[1:], saved[1:]):
        if not torch.equal(s["originals"], saved[0]["originals"]):
            raise ValueError(f"{run.path} reconstructed other validation images than {runs[0].path} (other data or "
                             "seed): compare runs of one sweep")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = checkerboard_figure(saved)
    fig.savefig(out_dir / "checkerboard.png")
    plt.close(fig)
    table = markdown_table(COLUMNS, [_row(run.metrics) for run in runs])
    notes = ("checkerboard score: unevenness (max - min) / max of the decoder's kernel overlap, from its "
             "architecture (`models.layers.checkerboard_score`; 0 = even). Flat-code pattern RMS: the "
             "trained decoder's output on a spatially constant code (the mean code of a validation batch), "
             "RMS deviation from flat, in 8-bit grey levels. PSNR on [0, 1] pixels, per image, averaged.")
    commands = ("```bash\npython train.py -m experiment=checkerboard "
                "data=folder data.root=../shared/datasets/cifar10-jpeg\n"
                f"python -m training.checkerboard <the sweep folder> --out {out_dir}\n```\n\n")
    return (commands + table + "\n\n" + notes
            + f"\n\n![checkerboard: reconstructions by decoder]({out_dir / 'checkerboard.png'})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.checkerboard", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the folder of python train.py -m experiment=checkerboard")
    parser.add_argument("--out", type=Path, default=None, help="where checkerboard.md/.png go (default: sweep_dir)")
    args = parser.parse_args(argv)
    out = args.out or args.sweep_dir
    try:
        table = report_checkerboard(args.sweep_dir, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    (out / "checkerboard.md").write_text(table)
    print(table + f"\nwrote {out / 'checkerboard.md'} and {out / 'checkerboard.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
