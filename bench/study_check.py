"""The driver's study check before Ray starts, in fresh processes: what a workspace that holds
other studies costs ``orch sweep`` before ``ray.init``.

- ``open+check``: open the existing sqlite storage and run ``check_study`` (what the driver
  did for every existing file before ``holds_no_study``).
- ``holds_no_study``: the read-only ``sqlite3`` look-up that now answers for a new study name.
- ``open-new`` / ``open-existing``: opening a new or an existing storage file (the study hub's
  start; a cached empty schema would save the difference).

Each timed from after the imports the driver has anyway (orch's sweep module) to the answer,
one fresh process per repetition.

    python bench/study_check.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TIMED = """
import sys, time
import orchestrator._sweep  # what the driver has imported before the check
from orchestrator.spec import prepare_sweep
from orchestrator.study import check_study, holds_no_study, open_storage
case, url = sys.argv[1], sys.argv[2]
spec = prepare_sweep(sys.argv[3], overrides=["name=another"]).spec
start = time.perf_counter()
if case == "open+check":
    check_study(spec, open_storage(url), resume=False, storage_url=url)
elif case == "holds_no_study":
    assert holds_no_study(url, spec.name)
else:
    open_storage(url)
print(time.perf_counter() - start)
"""

CASES = ("open+check", "holds_no_study", "open-new", "open-existing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/study_check.json"))
    args = parser.parse_args()
    spec = REPO / "bench" / "startup-noop.yaml"
    times: dict[str, list[float]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="orch-check-") as tmp:
        existing = f"sqlite:///{tmp}/optuna.db"
        seed = "import optuna, sys; optuna.create_study(study_name='first', storage=sys.argv[1])"
        subprocess.run([sys.executable, "-c", seed, existing], check=True, capture_output=True)
        for rep in range(args.repeat):
            for case in CASES:
                url = f"sqlite:///{tmp}/new-{rep}.db" if case == "open-new" else existing
                done = subprocess.run(
                    [sys.executable, "-c", TIMED, case, url, str(spec)],
                    capture_output=True,
                    text=True,
                    cwd=REPO,
                    check=True,
                )
                times[case].append(float(done.stdout.split()[-1]))
    rows = {
        case: {"min_s": min(ts), "median_s": statistics.median(ts), "runs_s": ts}
        for case, ts in times.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "cases": rows}, indent=2))
    print("| case | min (ms) | median (ms) |\n|---|---|---|")
    for case, row in rows.items():
        print(f"| {case} | {row['min_s'] * 1000:.1f} | {row['median_s'] * 1000:.1f} |")


if __name__ == "__main__":
    main()
