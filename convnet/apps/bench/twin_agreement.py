"""How closely every zoo model agrees with its Keras twin: probabilities and gradients.

For each zoo model (He-normal weights of seed 0; batch normalisation given
moving statistics away from their initial values): the largest difference
of the probabilities in inference mode, float32, on MNIST's 10,000
validation images (28x28x1 models) or 1,000 uniform [0, 1) images
(32x32x3, 64x64x3); and the largest difference of the float64 gradients
against TensorFlow's GradientTape, over the largest gradient, on a batch of 8 (training
mode, or inference mode for models with dropout, whose masks cannot be
shared). ``python -m convnet.apps.bench.twin_agreement`` prints one line per
model.
"""
import numpy as np

from convnet import data
from convnet.nn.sequential import Sequential
from convnet.nn.zoo import NAMES, load_spec
from convnet.tf.keras_twin import keras_loss_and_grads, to_keras


def _with_statistics(model, seed=5):
    """Give batch normalisation moving statistics away from zero mean and unit variance."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "state"):
            shape = layer.state["moving_mean"].shape
            layer.state["moving_mean"][...] = rng.normal(0, 0.3, shape)
            layer.state["moving_variance"][...] = rng.uniform(0.5, 2.0, shape)
    return model


def twin_agreement(name, X_valid):
    """Return (max |p - p_keras|, images compared, relative gradient difference) of a zoo model."""
    model = _with_statistics(Sequential(load_spec(name), seed=0))
    if model.input_shape == (28, 28, 1):
        X = X_valid[..., np.newaxis]
    else:
        X = np.random.default_rng(0).random((1000,) + model.input_shape, dtype=np.float32)
    twin = to_keras(model)
    gap = float(np.abs(model.predict_proba(X) - twin.predict(X, batch_size=500, verbose=0)).max())
    model64 = _with_statistics(Sequential(load_spec(name), seed=0, dtype=np.float64))
    twin64 = to_keras(model64, dtype="float64")
    X8 = X[:8].astype(np.float64)
    Y8 = np.random.default_rng(1).integers(0, model.num_classes, 8)
    training = not any(entry["layer"] == "Dropout" for entry in model.spec["layers"])
    _, grads = model64.loss_and_grads(X8, Y8, training=training)
    _, keras_grads = keras_loss_and_grads(twin64, X8, Y8, training)
    # Relative to the model's largest gradient: some gradients are zero in
    # exact arithmetic (a bias followed by batch normalisation in training).
    largest = max(float(np.abs(grad).max()) for grad in grads)
    relative = max(float(np.abs(grad - keras_grads[param]).max())
                   for param, grad in zip(model64.parameter_names(), grads)) / largest
    return gap, len(X), relative


if __name__ == "__main__":
    X_valid = data.load_mnist()[2]
    print(f"{'model':16}{'max |p - p_keras|':>20}{'images':>8}{'max |dg| / max |g|':>22}")
    for name in NAMES:
        gap, count, relative = twin_agreement(name, X_valid)
        print(f"{name:16}{gap:>20.2e}{count:>8}{relative:>22.2e}")
