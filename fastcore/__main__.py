import sys

from fastcore._tour import main

sys.exit(main(sys.argv[1:]))
