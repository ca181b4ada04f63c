"""`python -m keras_mim.cli ...` runs the `keras-mim` command."""

import sys

from keras_mim.cli import main

sys.exit(main())
