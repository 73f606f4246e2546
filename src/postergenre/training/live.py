"""DVCLive's files, written as each epoch ends: what `dvc plots`, DVC's VS Code extension
and DVC Studio follow while a model trains.

A training stage given a live folder (`--live`, dvc.yaml: `reports/training/NAME`) opens
it with DVCLive's `Live` and logs every finished epoch's numbers there under DVCLive's
Keras names (`train/loss`, `eval/loss`, `train/auc`, `eval/auc`, ...): `metrics.json`
(the last epoch's, with its `step`) and `plots/metrics/{train,eval}/*.tsv` (one row per
epoch). No clock goes in (no timestamps): a rerun writes the same bytes, which DVC hashes
into dvc.lock. A resumed run starts the folder afresh from the epochs its checkpoint
holds, then goes on, so it ends as an uninterrupted run's would. Each epoch's files are
written with a Ctrl-C held back (atomic.interrupts_held): an interrupted run's folder
holds its finished epochs, each whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from postergenre.atomic import interrupts_held

# Not numbers of an epoch: the history's bookkeeping.
_NOT_LOGGED = ("epoch", "phase", "stage")


class LiveLogError(ValueError):
    """DVCLive cannot log into the folder asked for (one error line from the CLI)."""


class LiveLog:
    """One training run's DVCLive folder (see the module doc); `earlier`: the history of
    the epochs a resumed run does not train again."""

    def __init__(self, folder: str | os.PathLike[str], earlier: Iterable[Mapping] = ()) -> None:
        from dvclive import Live

        with interrupts_held():
            # dvcyaml=None: the project's dvc.yaml declares the plots; save_dvc_exp=False:
            # a DVC experiment is `dvc exp run`'s to make, not a stage's.
            self.live = Live(dir=os.fspath(folder), save_dvc_exp=False, dvcyaml=None)
            for entry in earlier:
                self._log(entry)

    @staticmethod
    def open(folder: str | os.PathLike[str] | None, earlier: Iterable[Mapping] = ()
             ) -> LiveLog | None:
        """The live log in `folder`, or None without one. When DVCLive cannot start (it
        reads the git state, and fails in a repository without a commit) this is an
        error before the first epoch, not a missing DVC output after the last."""
        if folder is None:
            return None
        try:
            return LiveLog(folder, earlier)
        except Exception as err:  # noqa: BLE001 - DVCLive's and scmrepo's own errors
            raise LiveLogError(f"{folder}: DVCLive cannot start ({err}); in a git "
                               "repository with no commit yet, commit once") from err

    def _log(self, entry: Mapping[str, Any]) -> None:
        from dvclive.utils import standardize_metric_name

        for key, value in entry.items():
            if key not in _NOT_LOGGED:
                self.live.log_metric(standardize_metric_name(key, "dvclive.keras"),
                                     float(value))
        self.live.next_step()

    def epoch(self, entry: Mapping[str, Any]) -> None:
        """Log one finished epoch (its numbers: loss, val_loss, auc, val_auc, ...)."""
        with interrupts_held():
            self._log(entry)

    def end(self) -> None:
        with interrupts_held():
            self.live.end()
