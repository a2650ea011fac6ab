"""Scoring records after training: on a CPU the classifier runs on ONNX Runtime and gives what eager PyTorch gives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from datasets.layout import ImageRecord
from inspection.imaging import read_image
from inspection.preprocessing import PreprocessSpec, preprocess
from models.classifier import DefectClassifier
from training.predict import predict_records

SPEC = PreprocessSpec(image_size=96, color_mode="gray")


def _records(folder: Path) -> list[ImageRecord]:
    """Five images with structure (a gradient and a dark scratch of varying place), gray and color, of mixed sizes."""
    rng = np.random.default_rng(0)
    records = []
    for index, shape in enumerate([(90, 120), (96, 96), (140, 100, 3), (60, 80), (110, 110, 3)]):
        ramp = np.linspace(50, 210, shape[1])[None, :] + rng.normal(0, 6, shape[:2])
        ramp[shape[0] // 3 + 5 * index, 10 : shape[1] // 2] = 15
        image = ramp.clip(0, 255).astype(np.uint8)
        if len(shape) == 3:
            image = np.dstack([image, image // 2, 255 - image])
        path = folder / f"{index}.png"
        cv2.imwrite(str(path), image)
        records.append(ImageRecord(f"good/{index}.png", "good", path))
    return records


def test_cpu_scoring_runs_the_classifier_on_onnx_runtime_and_agrees_with_eager_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)  # the heads are random: seeded so the probabilities are not all one value
    model = DefectClassifier(num_defect_types=3, trainable_stages=2, pretrained=True)
    records = _records(tmp_path)
    with torch.no_grad():
        inputs = torch.from_numpy(np.stack([preprocess(read_image(r.path), SPEC) for r in records]))
        eager = model.eval()(inputs)
    runs_of_the_callers_model = []
    model.register_forward_hook(lambda module, *_: runs_of_the_callers_model.append(module is model))
    model.train()  # scoring must switch to eval mode itself (dropout off, batch-norm statistics frozen)

    predicted = predict_records(model, records, SPEC, torch.device("cpu"), batch_size=2)  # three batches

    assert predicted.defect_probability.shape == (5,) and predicted.type_probabilities.shape == (5, 3)
    np.testing.assert_allclose(predicted.defect_probability, eager.defect_probability.numpy(), atol=1e-5)
    np.testing.assert_allclose(predicted.type_probabilities, eager.type_probabilities.numpy(), atol=1e-5)
    assert float(np.ptp(predicted.defect_probability)) > 1e-3  # the images score apart: not a constant output
    # A copy was exported and ONNX Runtime scored the batches: the caller's model itself never ran.
    assert True not in runs_of_the_callers_model
