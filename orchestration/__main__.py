"""`python -m orchestration` is the `flashsale` command (child processes are started so)."""

from orchestration.cli import main

if __name__ == "__main__":
    main()
