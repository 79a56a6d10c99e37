"""Set up a stage-2 refiner run (tumor and cyst inside the kidney region) from an existing stage-1 run.

    .venv/bin/python scripts/refiner_run.py work_runs/demo_fold1 work_runs/demo_refiner --patch 48,64,64 \
        --warm-start KidneyTumorSeg/Resources/Models/kits-demo/1.1.0/fold1.safetensors
    .venv/bin/kidneytumorseg-train train --resume work_runs/demo_refiner --threads 1 --workers 1

See kidneytumorseg_training.refiner_config for the settings it writes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kidneytumorseg_training.cli.prepare import patch_size_argument
from kidneytumorseg_training.refiner_config import write_refiner_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage_one_run", type=Path, help="run folder whose data, split and schedule to reuse")
    parser.add_argument("output", type=Path, help="new run folder (must not hold a run)")
    parser.add_argument("--patch", type=patch_size_argument, default=None, help="patch S,P,L (default: the plan's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the stage-1 run's)")
    parser.add_argument("--warm-start", type=Path, default=None,
                        help="stage 1's weights (.safetensors or checkpoint folder) to start from (default: random)")
    parser.add_argument("--preprocessed", type=Path, default=None,
                        help="the same cases preprocessed at the refiner's own spacing (default: stage 1's data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    written = write_refiner_run(args.stage_one_run, args.output, args.patch, args.epochs, args.warm_start,
                                args.preprocessed)
    logging.info("Wrote %s; start it with: kidneytumorseg-train train --resume %s", written, args.output)


if __name__ == "__main__":
    main()
