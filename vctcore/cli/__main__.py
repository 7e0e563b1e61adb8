import sys

from vctcore.cli import main

sys.exit(main())
