"""One command per study: run a grid of zapkeras runs, then aggregate."""
