"""`python -m looplint` is the `looplint` command."""

import sys

from looplint.cli import main

sys.exit(main())
