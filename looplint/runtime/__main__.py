"""`python -m looplint.runtime SCRIPT ...` is `looplint run SCRIPT ...` (handy under torchrun)."""

import sys

from looplint.runtime.cli import main

sys.exit(main(sys.argv[1:]))
