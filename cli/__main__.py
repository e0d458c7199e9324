"""``python -m cli ...`` is ``booking ...`` (how the stacks start their children)."""

from cli.main import main

main()
