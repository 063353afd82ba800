#!/usr/bin/env python3
"""Medians over the rounds of `tools/bench_rounds.sh` (or any concatenated output of
`tools/bench_vs_torch.py`): one line per table cell with the median ferrolm and PyTorch tokens/s,
the median ratio and every round's ratio, so a note can quote figures that one noisy run
would not give.

    bash tools/bench_rounds.sh | tee rounds.log; python3 tools/bench_summary.py rounds.log
"""

import re
import statistics
import sys


def summarize(lines):
    cells = {}  # (mode, precision, preset, batch) -> list of (ours, theirs, ratio)
    mode = precision = None
    for line in lines:
        m = re.match(r"threads \d+, .*precision (\w+)", line)
        if m:
            mode, precision = "train", m.group(1)
            continue
        m = re.match(r"generate: .*ferrolm weights (\w+)", line)
        if m:
            mode, precision = "generate", m.group(1)
            continue
        f = line.split()
        if mode == "train" and len(f) == 7 and f[0] in ("tiny", "small") and f[1].isdigit():
            cells.setdefault((mode, precision, f[0], int(f[1])), []).append(
                (float(f[2]), float(f[3]), float(f[4])))
        elif mode == "generate" and len(f) in (5, 6) and f[0] in ("tiny", "small"):
            # preset, ferrolm, torch f32 [, torch bf16], ratio, ms/token
            theirs = max(float(x) for x in f[2:-2])
            cells.setdefault((mode, precision, f[0], 1), []).append((float(f[1]), theirs, float(f[-2])))
    return cells


def main():
    lines = open(sys.argv[1]).read().splitlines() if len(sys.argv) > 1 else sys.stdin.read().splitlines()
    cells = summarize(lines)
    if not cells:
        sys.exit("no bench_vs_torch.py tables found in the input")
    print(f"{'mode':<9}{'prec':<6}{'preset':<7}{'batch':>6}{'ferrolm':>9}{'torch':>8}{'median':>8}  ratios")
    for (mode, prec, preset, batch), rows in sorted(cells.items()):
        ours = statistics.median(r[0] for r in rows)
        theirs = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[2] for r in rows)
        print(f"{mode:<9}{prec:<6}{preset:<7}{batch:>6}{ours:>9.0f}{theirs:>8.0f}{ratio:>8.2f}  "
              + ", ".join(f"{r[2]:.2f}" for r in rows))


if __name__ == "__main__":
    main()
