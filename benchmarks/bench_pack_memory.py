"""Peak memory of a packed training job (``training.pack``) by pack size, on the CPU.

    python benchmarks/bench_pack_memory.py [--members 1,5,15,25] [--epochs 1]

Each pack size runs in a fresh process: MER2023-shaped synthetic features
(``SyntheticConfig(scale=1.0)``, dims 1024 / 5120 / 768, 3373 train samples), 5
folds, the MER2023 config's ``baseline`` arm, ``train_pack`` over seeds x folds.
Prints the process's peak RSS after the data are built and at the end, and the
growth per member: the folds of a pack share one copy of the train split
(:class:`prmf.train.TensorSubset`), so a member adds only its model, optimizer
state and index arrays.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import resource, sys
sys.path.insert(0, {repo!r})
from prmf.config import load_config, resolve_arm
from prmf.data.folds import make_folds
from prmf.data.synthetic import SyntheticConfig, generate
from prmf.data.zero_rows import flag_zero_rows
from prmf.train import train_pack
cfg = load_config({repo!r} + "/config/config.yaml", {repo!r} + "/config/mer2023.yaml")
store = generate(SyntheticConfig(scale=1.0, dims={{"audio": 1024, "text": 5120, "video": 768}}))
flag_zero_rows(store)
folds = make_folds(store, 5, seed=0)
arm = {{**resolve_arm(cfg, "baseline"), "epochs": {epochs}}}
data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
train_pack(store, folds, [(s, f) for s in range({members} // 5 + 1) for f in range(5)][:{members}], arm, device="cpu")
print(data, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", default="1,5,15,25", help="pack sizes, comma-separated (default 1,5,15,25)")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    print("| members | peak RSS after data MiB | peak RSS at end MiB | MiB per member |")
    print("|--:|--:|--:|--:|")
    for k in (int(x) for x in args.members.split(",")):
        code = CHILD.format(repo=str(REPO), epochs=args.epochs, members=k)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        data_kib, end_kib = (int(x) for x in out.stdout.split()[-2:])
        print(f"| {k} | {data_kib / 1024:.0f} | {end_kib / 1024:.0f} | {(end_kib - data_kib) / 1024 / k:.1f} |")


if __name__ == "__main__":
    main()
