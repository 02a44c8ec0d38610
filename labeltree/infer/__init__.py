"""One way to run a trained model: `open_model(path)` gives a `Model` for a `.pt` (torch) or an `.onnx`
(ONNX Runtime, no torch); `predict_files` writes `labeltree predict`'s files; `Model.predictor(dataset)`
is what `evaluate --checkpoint` runs.

    from labeltree.infer import open_model
    model = open_model("runs/tiny/best.pt")
    p = model.predict_array(photo, "cityscapes")     # Prediction: p.nodes (tree nodes) at the photo's size
    ids = model.dataset_values(p, "cityscapes")      # the dataset's stored values
"""

from labeltree.infer.base import Model, ModelPredictor, Prediction
from labeltree.infer.files import predict_files
from labeltree.infer.load import open_model

__all__ = ["Model", "ModelPredictor", "Prediction", "open_model", "predict_files"]
