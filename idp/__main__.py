"""`python -m idp` is the `idp` command."""

from idp.commands import main

main()
