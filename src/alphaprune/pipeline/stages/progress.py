"""Per-epoch progress of a training command: a bar on a terminal, plain log lines otherwise
(e.g. in a Snakemake log file)."""

from __future__ import annotations

import logging
import sys

from alphaprune.world import environment

log = logging.getLogger("alphaprune")


class Progress:
    """Called with each epoch's history row; `close()` when the run ends."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.bar = None
        if sys.stderr.isatty() and environment().main:  # one bar for a run's processes
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="epoch", leave=False)

    def __call__(self, row: dict) -> None:
        alpha = "-" if row["alpha"] is None else f"{row['alpha']:.3f}"
        text = (
            f"epoch {row['epoch']} α={alpha} train_acc={row['train_acc']:.4f} "
            f"val_acc={row['val_acc']:.4f} loss={row['train_loss']:.4f}"
        )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text.split(" ", 2)[2])
        else:
            log.info("%s: %s", self.label, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
