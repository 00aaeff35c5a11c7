"""`python -m sola` (also what `torchrun -m sola train ...` runs)."""

from sola.cli import main

raise SystemExit(main())
