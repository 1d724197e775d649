import sys

from retail_dev.cli import main

sys.exit(main())
