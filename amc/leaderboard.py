"""``python -m amc.leaderboard DIR... [output=DIR]``: finished searches summarised per budget and method.

Reads every finished search under the folders (single run dirs, Hydra multirun folders, a study's tree) and
writes ``leaderboard.md`` (mean ± 95 % CI over seeds of search-val, test top-1 before and after fine-tuning, MACs
ratio, evaluations, wall time) and ``leaderboard.png`` (best score so far against evaluations). Not a Hydra app:
it takes folders as positional arguments, as ``ls`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from amc.errors import ConfigError
from amc.io import write_text_atomic
from amc.reporting.leaderboard import find_runs, markdown, plot

USAGE = "usage: python -m amc.leaderboard RUN_OR_SWEEP_DIR... [output=DIR]"


def parse(argv: list[str]) -> tuple[list[Path], Path]:
    folders, output = [], None
    for arg in argv:
        if arg.startswith("output="):
            output = Path(arg.removeprefix("output="))
        elif "=" in arg.split("/")[0] or arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r}; {USAGE}")
        else:
            folders.append(Path(arg))
    if not folders:
        raise ConfigError(f"no folder given; {USAGE}")
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise ConfigError(f"not a folder: {', '.join(missing)}")
    return folders, output or folders[0]


def main(argv: list[str] | None = None) -> int:
    try:
        folders, output = parse(sys.argv[1:] if argv is None else argv)
        runs = find_runs(folders)
        if not runs:
            raise ConfigError(
                f"no finished search under {', '.join(map(str, folders))} (a run dir holds strategy.json)"
            )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(runs)
    count = f"{len(runs)} run" + ("s" if len(runs) > 1 else "")
    write_text_atomic(output / "leaderboard.md", f"# Search leaderboard\n\n{count}.\n\n{table}")
    plot(runs, output / "leaderboard.png")
    print(table)
    print(f"{count}; written: {output / 'leaderboard.md'}, {output / 'leaderboard.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
