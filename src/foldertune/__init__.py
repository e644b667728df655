"""foldertune: turn a folder of images into a trained, evaluated image classifier.

import foldertune as ft
run = ft.train(data="photos/", model="mobilenet_v2", mode="finetune", epochs=10)
clf = ft.load(run)
print(clf.predict("new_photo.jpg"))
"""

__version__ = "0.1.0"

from foldertune.api import check, compare, evaluate, explain, export, load, lr_find, plot, report, resume, train
from foldertune.errors import UnknownKeyword, UserError

__all__ = ["UnknownKeyword", "UserError", "__version__", "check", "compare", "evaluate", "explain", "export", "load",
           "lr_find", "plot", "report", "resume", "train"]  # fmt: skip
