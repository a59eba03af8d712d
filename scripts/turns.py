"""Side-by-side timing on a shared machine: the engines compared take turns."""


def alternate(runs: int, first, second) -> None:
    """Calls `first` and `second` `runs` times each, taking turns, each
    going first every other time, so that a change in the host's load
    falls on both alike."""
    for run in range(runs):
        for timed in (first, second) if run % 2 == 0 else (second, first):
            timed()
