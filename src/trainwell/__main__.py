"""``python -m trainwell ...`` (also ``torchrun ... -m trainwell train CONFIG``)."""

import sys

from trainwell.cli.main import main

sys.exit(main())
