"""A PaddleHub AutoDL-style script trial: flags in, report_final_result out, params saved."""

import argparse
import os

import autotune

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--saved_params_dir", required=True)
parser.add_argument("--model_path", default=None)
parser.add_argument("--data", default=None)  # a file holding a number, added to the score
args = parser.parse_args()

offset = 0.0
if args.data:
    with open(args.data) as f:  # a relative path means relative to where `autotune run` started
        offset = float(f.read())
start = 0.0
if args.model_path:
    with open(os.path.join(args.model_path, "params.txt")) as f:
        start = float(f.read())
os.makedirs(args.saved_params_dir, exist_ok=True)
with open(os.path.join(args.saved_params_dir, "params.txt"), "w") as f:
    f.write(str(start + args.x))
print(f"x={args.x} start={start}")
autotune.report_final_result(-((args.x - 0.3) ** 2) + 0.001 * start + offset)
