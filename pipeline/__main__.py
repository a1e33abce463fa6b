"""`python -m pipeline ...` is the same as the `audioret` console script (used by tests' subprocesses)."""
from pipeline.cli import main

if __name__ == "__main__":
    main()
