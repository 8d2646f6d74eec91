"""The named training budgets of ``zoo train --preset`` and :meth:`igpg.TrainConfig.preset`.

Light on purpose (``zoo --help`` reads it without importing torch). Times: 2 idle CPU cores, the 24-checkpoint
sample zoo (``zoo sample-zoo``); bench/README.md, "zoo train presets".
"""

from __future__ import annotations

PRESETS: dict[str, str] = {  # preset name -> its budget, what it is for and its expected time
    "quick": "200 + 200 steps, a small prior: a smoke run (decoded networks near chance; class heads made "
    "from a dataset's examples still fit); about 1-2 min",
    "small": "2,000 + 1,500 steps, a 3-layer prior of width 128: the zoo demo generator; about 8 min",
    "default": "2,000 + 1,500 steps, the full-size prior; about 16 min (30-50 min on a busy machine)",
}
