import sys

from distnet.jobs.cli import main

sys.exit(main())
