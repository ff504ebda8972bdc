"""`python -m flashsale` is the `flashsale` command."""

from flashsale.cli import main

main()
