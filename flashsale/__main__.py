"""`python -m flashsale` is the `flashsale` command."""

from flashsale.cli import main

if __name__ == "__main__":
    main()
