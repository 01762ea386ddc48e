"""`python -m looplint` is the `looplint` command."""

import sys

from looplint.adapters.cli import main

sys.exit(main())
