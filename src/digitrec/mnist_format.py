"""MNIST's format, which every digit model here reads and every source and image reader gives: a ``FIELD`` x ``FIELD``
uint8 image, white ink on black, the digit's longer side ``BOX`` px with its centre of mass at the centre.

It imports nothing, so that any module may use it without loading NumPy, OpenCV or PyTorch.
"""

FIELD = 28  # pixels a side
BOX = 20  # the digit's longer side
PIXELS = FIELD * FIELD  # one digit as a row of numbers (Kaggle's CSV columns, an MLP's input)
