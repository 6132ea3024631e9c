"""What an ensemble of independently trained runs gains over its members, on images all of them held out.

    python benchmarks/ensembles.py <sweep or log folder>           # every pair of the runs under it
    python benchmarks/ensembles.py <run> <run> ... --checkpoint best --out ensembles.md

Each run's checkpoint (its last, or its best) predicts the run's own validation split with the
test-time augmentation of its final validation (flips, translated views), in fp32. Runs of different
seeds hold out different images (the split is seeded: two random 5k-of-50k splits share about 500),
so each pair is scored on the images both held out, and the baseline is the two members' accuracy on
those same images: the gain is paired, its noise far below that of two accuracies on 500 images. An
ensemble predicts by the mean of its members' logits (Lakshminarayanan et al. 2017, "Simple and
scalable predictive uncertainty estimation using deep ensembles", average their probabilities; with
members this alike the two agree to a few images). Runs that hold out the same images (one data seed)
are also scored as one ensemble of all of them. The question it answers: is an ensemble of k runs of
budget B/k worth more than one run of budget B? It prints numbers and asserts nothing.
"""
from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from convzoo.models.serialization import load_checkpoint, net_from_checkpoint  # noqa: E402
from convzoo.training.eval_data import build_datamodule  # noqa: E402
from convzoo.training.machine import summary  # noqa: E402
from convzoo.training.metrics import final_translate, predict_logits  # noqa: E402
from convzoo.training.runs import CLASSIFIER, find_runs  # noqa: E402
from convzoo.training.tables import records_table  # noqa: E402
from convzoo.training.timing import spread  # noqa: E402

# What makes two runs' data the same images under the same indices (the seed only picks the split).
DATA_KEYS = ("_target_", "root", "num_samples", "image_size")


def checkpoint_of(run, which: str) -> Path:
    """The run's ``last.ckpt``, or the best one its metrics name."""
    path = run.path / "checkpoints" / "last.ckpt" if which == "last" else run.metrics.get("best_checkpoint")
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"{run.path}: no {which} checkpoint ({path}); trained runs keep "
                                "checkpoints/last.ckpt and the best one metrics.json names")
    return Path(path)


def held_out_logits(run, which: str) -> dict:
    """The run's logits (N, classes), labels and held-out image indices on its own validation split."""
    path = checkpoint_of(run, which)
    ckpt = load_checkpoint(path)
    net = net_from_checkpoint(ckpt, path)
    data_cfg = run.cfg["data"]
    dm = build_datamodule(OmegaConf.create(data_cfg), ckpt)
    hparams = ckpt["hyper_parameters"]
    logits, labels = predict_logits(net, dm.val_dataloader(), torch.device("cpu"),
                                    bool(hparams.get("tta_flip", False)), final_translate(hparams))
    return {"run": run, "logits": logits, "labels": labels, "ids": dm.val_ids.clone(),
            "data": tuple(data_cfg.get(k) for k in DATA_KEYS)}


def common(a: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``a`` and in ``b`` of the images both held out (ids are sorted)."""
    shared = a["ids"][torch.isin(a["ids"], b["ids"])]
    ia, ib = torch.searchsorted(a["ids"], shared), torch.searchsorted(b["ids"], shared)
    if not torch.equal(a["labels"][ia], b["labels"][ib]):
        raise ValueError(f"{a['run'].path} and {b['run'].path} give other labels to the same held-out image "
                         "indices: their data sets differ (compare only runs of one data set)")
    return ia, ib


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def pair_rows(members: list[dict]) -> list[dict]:
    rows = []
    for a, b in itertools.combinations(members, 2):
        ia, ib = common(a, b)
        if len(ia) == 0:
            continue
        labels = a["labels"][ia]
        acc_a, acc_b = accuracy(a["logits"][ia], labels), accuracy(b["logits"][ib], labels)
        ens = accuracy(a["logits"][ia] + b["logits"][ib], labels)
        rows.append({"run a": a["run"].name, "run b": b["run"].name, "shared images": len(ia), "acc a": acc_a,
                     "acc b": acc_b, "ensemble acc": ens, "gain": ens - (acc_a + acc_b) / 2})
    return rows


def mean_sem(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (0 for one value)."""
    return statistics.mean(values), spread(values) / math.sqrt(len(values))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python benchmarks/ensembles.py", description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", help="run folders or folders holding runs (2 runs at least)")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help="which checkpoint of each run")
    p.add_argument("--out", default=None, help="also write the markdown to this file")
    opts = p.parse_args(argv)
    runs = find_runs(opts.folders, task=CLASSIFIER)
    if len(runs) < 2:
        p.error(f"found {len(runs)} classifier run(s) under {', '.join(opts.folders)}: an ensemble needs 2 or more")
    members = [held_out_logits(run, opts.checkpoint) for run in runs]
    for m in members[1:]:
        if m["data"] != members[0]["data"]:
            p.error(f"{m['run'].path} trained on {dict(zip(DATA_KEYS, m['data']))} but {members[0]['run'].path} on "
                    f"{dict(zip(DATA_KEYS, members[0]['data']))}: compare runs of one data set")
    singles = [{"run": m["run"].name, "seed": m["run"].cfg.get("seed"), "held-out images": len(m["labels"]),
                "acc": accuracy(m["logits"], m["labels"])} for m in members]
    pairs = pair_rows(members)
    command = " ".join(["python benchmarks/ensembles.py", *(argv if argv is not None else sys.argv[1:])])
    text = [f"# {command}", f"{summary()}; {len(members)} runs, {opts.checkpoint} checkpoints, each on its own "
            "validation split with its final test-time augmentation, fp32", "", records_table(singles), ""]
    result = {"singles": singles, "pairs": pairs}
    if all(torch.equal(m["ids"], members[0]["ids"]) for m in members):  # one split: the ensemble of all
        labels = members[0]["labels"]
        result["all"] = accuracy(sum(m["logits"] for m in members), labels)
        text += [f"One split: the ensemble of all {len(members)} runs: {result['all']:.4f} on "
                 f"{len(labels)} images (members' mean {statistics.mean(s['acc'] for s in singles):.4f}).", ""]
    if pairs:
        gain, sem = mean_sem([r["gain"] for r in pairs])
        member = statistics.mean(s["acc"] for s in singles)
        result.update(gain=gain, gain_sem=sem, expected_pair=member + gain)
        text += [records_table(pairs), "",
                 f"Pairs: mean gain {gain:+.4f} ± {sem:.4f} (standard error over {len(pairs)} pairs); members' "
                 f"mean accuracy {member:.4f} on their whole splits, so a pair's ensemble is expected near "
                 f"{member + gain:.4f}."]
    else:
        text.append("No two runs held out a common image: no pair to score.")
    print("\n".join(text))
    if opts.out:
        Path(opts.out).write_text("\n".join(text) + "\n")
    return result


if __name__ == "__main__":
    main()
