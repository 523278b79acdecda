"""Using a model reads its weights, dataset and class names, never the optimiser's state."""
import numpy as np

from convnet.nn.lenet5 import LeNet5
from convnet.nn.optim import Adam
from convnet.training import checkpoint


def test_reading_a_model_leaves_the_optimisers_moments_unread(tmp_path, monkeypatch):
    model = LeNet5(seed=0)
    optimizer = Adam(model.parameters())
    settings = {"seed": 0, "batch_size": 32, "lr": 1e-3, "dataset": "mnist", "train_size": 8}
    history = {key: [0.5] for key in checkpoint.HISTORY_KEYS}
    path = tmp_path / "checkpoint.npz"
    checkpoint.write(path, model, optimizer, 0, settings, history, [str(k) for k in range(10)])
    read = []
    original = checkpoint.read_data
    monkeypatch.setattr(checkpoint, "read_data",
                        lambda path, archive, info, key, *rest: read.append(key) or
                        original(path, archive, info, key, *rest))
    _, weights, dataset, names = checkpoint.read_model(path)
    # The spec and the optimiser's configuration (small JSON) give the layout; no moment.
    arrays = [key for key in read if key not in checkpoint.TEXT_MEMBERS]
    assert sorted(arrays) == sorted([*weights, "dataset", "class_names"])
    assert dataset == "mnist" and len(names) == 10
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(weights[name], value)
    # The file does hold the moments: a full read takes them.
    assert "optimizer_m0" not in read
    assert "optimizer_m0" in checkpoint.read(path).arrays
