"""The choices a user makes on every surface (the Python API, the CLI, the server), and their defaults, as plain values.

It imports nothing, so that the CLI can list them in its help without loading NumPy or PyTorch.
"""

ENGINES = ("auto", "torch", "onnx")  # what runs a model; auto: ONNX Runtime where a current .onnx file is, else PyTorch
UNCERTAIN_BELOW = 0.9  # calibrated confidence under which a reading is flagged uncertain: "high confidence" starts here
# The image files digitrec reads, by the names people know them by: a folder's images are the files with these suffixes.
IMAGE_FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "GIF": (".gif",), "BMP": (".bmp",), "WebP": (".webp",),
                 "TIFF": (".tif", ".tiff"), "ICO": (".ico",)}
IMAGE_SUFFIXES = frozenset(suffix for suffixes in IMAGE_FORMATS.values() for suffix in suffixes)
FORMAT_NAMES = ", ".join(list(IMAGE_FORMATS)[:-1]) + " or " + list(IMAGE_FORMATS)[-1]  # "PNG, JPEG, ... or ICO"
