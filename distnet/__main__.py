import sys

from distnet.cli import main

sys.exit(main())
