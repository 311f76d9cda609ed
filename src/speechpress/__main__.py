import sys

from speechpress.cli import main

sys.exit(main())
