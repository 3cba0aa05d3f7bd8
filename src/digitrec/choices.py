"""The choices a user makes on every surface (the Python API, the CLI, the server), and their defaults, as plain values.

It imports nothing, so that the CLI can list them in its help without loading NumPy or PyTorch.
"""

ENGINES = ("auto", "torch", "onnx")  # what runs a model; auto: ONNX Runtime where a current .onnx file is, else PyTorch
UNCERTAIN_BELOW = 0.9  # calibrated confidence under which a reading is flagged uncertain: "high confidence" starts here
