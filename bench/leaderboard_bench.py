"""Time the versions' leaderboard (Bradley-Terry fit and its bootstrap refits), old against new.

Builds synthetic arena votes among a few versions with known strengths (some ties), then times
`leaderboard(votes, samples=...)` from the pure-Python version at a git revision (default
a8c107b, the last one before numpy; written to a temporary file and imported from there) and
from the checkout, in the same run, median of --repeats each. Prints `uptime` first: the machine
is shared.

    .venv/bin/python bench/leaderboard_bench.py --votes 10000 --versions 6
"""

import argparse
import importlib.util
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose training/leaderboard.py is the pure-Python fit.
PURE_PYTHON_REV = "a8c107b"


def synthetic_votes(*, count: int, versions: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """Return `count` votes between `versions` versions of evenly spaced strengths, one in ten a tie."""
    rng = random.Random(seed)
    strength = {f"policy-v{i + 1}": 0.3 * i for i in range(versions)}
    names = list(strength)
    votes = []
    for _ in range(count):
        a, b = rng.sample(names, 2)
        if rng.random() < 0.1:
            votes.append((a, b, 0.5))
        else:
            p_a = 1 / (1 + math.exp(strength[b] - strength[a]))
            votes.append((a, b, 1.0 if rng.random() < p_a else 0.0))
    return votes


def module_at(rev: str, folder: Path):
    """Import training/leaderboard.py as it was at `rev` (it has no Django imports)."""
    source = subprocess.run(["git", "show", f"{rev}:training/leaderboard.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = folder / "leaderboard_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("leaderboard_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(fit, votes, *, samples: int, repeats: int) -> tuple[float, list[dict]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        board = fit(votes, samples=samples)
        times.append(time.perf_counter() - started)
    return statistics.median(times), board


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=6)
    parser.add_argument("--samples", type=int, default=200, help="bootstrap refits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-rev", default=PURE_PYTHON_REV, help="git revision of the pure-Python version")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from training import leaderboard as new

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    votes = synthetic_votes(count=args.votes, versions=args.versions)
    with tempfile.TemporaryDirectory() as folder:
        old = module_at(args.old_rev, Path(folder))
        old_s, old_board = median_seconds(old.leaderboard, votes, samples=args.samples, repeats=args.repeats)
        new_s, new_board = median_seconds(new.leaderboard, votes, samples=args.samples, repeats=args.repeats)
    print(f"{args.votes} votes, {args.versions} versions, {args.samples} bootstrap refits, median of {args.repeats}")
    print(f"old ({args.old_rev}, pure Python): {old_s * 1000:8.1f} ms")
    print(f"new (numpy):                 {new_s * 1000:8.1f} ms")
    print(f"ratio old/new: {old_s / new_s:.1f}x")
    old_point = {row["version"]: row["strength"] for row in old_board}
    new_point = {row["version"]: row["strength"] for row in new_board}
    print(f"largest difference of the point strengths: {max(abs(old_point[v] - new_point[v]) for v in old_point):.1e}")
    print(f"same order: {[row['version'] for row in old_board] == [row['version'] for row in new_board]}")
    for row in new_board:
        print(f"  {row['version']:<12} {row['strength']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"
              f"  games {row['games']}  win rate {row['win_rate']:.3f}")


if __name__ == "__main__":
    main()
