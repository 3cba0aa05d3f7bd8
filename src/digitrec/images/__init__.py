"""Any image a person gives -> what digitrec's models read, each step once.

How an image flows through the package, top to bottom:

1. :mod:`~digitrec.images.decode`: a path, bytes, a PIL image or an array -> uint8 pixels, upright (EXIF), the
   one pixel limit checked from the header first; arrays follow one pixel rule (:func:`as_pixels`).
2. :mod:`~digitrec.images.ink`: pixels -> the ink: shrunk to working size, projected onto the ink's colour axis,
   the paper's own level (shadows) removed, thresholded into components, specks dropped.
3. :mod:`~digitrec.images.clean`: less what is no digit's: squared or ruled paper, a form's box, a ring, an underline.
4. :mod:`~digitrec.images.field`: a group of ink -> MNIST's 28x28 (20 px box, centre of mass, MNIST's pen width).
5. :mod:`~digitrec.images.cuts`: a number's ink -> groups left to right, their cuts into touching digits, the row.

:class:`Page` holds one image through all of it: each form is made on first use and kept, so a digit,
a number and the pictures of the steps are read from one decoding and one search for ink.
"""

from digitrec.images.cuts import ROW_HEIGHT, ROW_INK, ROW_MARGIN, ROW_STEP, fit_row
from digitrec.images.decode import DIGIT_SHAPES, MAX_PIXELS, as_pixels, digit_batch, open_image, upright
from digitrec.images.field import SCAN_TURNS, views
from digitrec.images.page import Page, strip, to_mnist
from digitrec.mnist_format import BOX, FIELD

__all__ = ["BOX", "DIGIT_SHAPES", "FIELD", "MAX_PIXELS", "ROW_HEIGHT", "ROW_INK", "ROW_MARGIN", "ROW_STEP", "SCAN_TURNS",
           "Page", "as_pixels", "digit_batch", "fit_row", "open_image", "strip", "to_mnist", "upright", "views"]
