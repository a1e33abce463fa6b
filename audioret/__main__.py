"""`python -m audioret ...` is the same as the `audioret` console script."""
from audioret.cli import main

if __name__ == "__main__":
    main()
