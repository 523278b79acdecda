"""Keras training as one worker of a ``tf.distribute.MultiWorkerMirroredStrategy`` cluster.

The cluster is the one ``TF_CONFIG`` describes (see ``convnet.tf.keras_workers``,
which also starts one on this machine). ``train_cluster`` is the loop every
worker runs; ``evaluate`` measures a model on one worker, without the
strategy.
"""
import os
import time

import numpy as np

from convnet.tf import keras_workers
from convnet.tf.exchange import EVAL_BATCH, as_images, empty_history, set_seeds, tf
from convnet.tf.keras_training import build_keras, keras_targets
from convnet.training.events import EpochEnded, epoch_line
from convnet.training.loop import epoch_order


def train_cluster(data, spec, epochs=5, batch_size=32, optimizer="adam", learning_rate=None,
                  seed=0, log=None, on_event=None):
    """Train the Keras twin of ``spec`` as this worker of the TF_CONFIG cluster.

    Keras 3's ``fit`` does not run under MultiWorkerMirroredStrategy (it
    fails converting the per-replica batches), so the loop is written here.
    Each epoch visits the training set in ``loop.epoch_order(seed,
    epoch)`` order, the same on every worker; each global batch of
    ``batch_size`` images is cut into one contiguous slice per worker
    (worker ``i`` of ``n`` takes rows ``floor(b i / n)`` to ``floor(b (i+1) /
    n) - 1`` of a batch of ``b``), each worker takes the gradient of
    ``sum(its losses) / b``, and the strategy sums those gradients: the
    gradient of the batch's mean loss, whatever the number of workers.

    Parameters
    ----------
    data : tuple
        (X_train, Y_train, X_valid, Y_valid): images (m, h, w, c) of the
        spec's input shape ((m, h, w) when c is 1) and integer labels (m,).
    spec : dict
        The canonical spec.
    epochs, batch_size : int
        ``batch_size`` is the global batch, shared among the workers.
    optimizer : str
        adam, rmsprop or sgd (Keras's own).
    learning_rate : float, optional
        Default: Keras's for the optimizer.
    seed : int
        Seeds the initial weights, the dropout masks and the order.
    log : callable, optional
        Receives each epoch's line in task 4's format (give it on the chief).
    on_event : callable, optional
        Receives an ``EpochEnded`` event after every epoch (give it on the chief).

    Returns
    -------
    history : dict
        "loss", "accuracy" (means over the epoch's training batches, as
        Keras's fit reports them), "val_loss", "val_accuracy" (measured
        after the epoch, on the chief only: empty lists on the others) and
        "epoch_seconds", one entry per epoch.
    model : keras.Model
        The trained twin (the same weights on every worker).
    index : int
        This worker's index; 0 is the chief.
    """
    index, workers = keras_workers.cluster_task()
    if keras_workers.LAUNCHER_ENV in os.environ:
        keras_workers.end_with_launcher(int(os.environ[keras_workers.LAUNCHER_ENV]))
        # The workers share this machine's processors; set before TensorFlow starts.
        from convnet.parallel.distributed import available_processors
        threads = max(1, available_processors() // workers)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Creating the strategy must come before any TensorFlow operation runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    input_shape = tuple(spec["layers"][0]["shape"])
    X_train, Y_train, X_valid, Y_valid = data
    X_train = as_images(X_train, input_shape)
    X_valid = as_images(X_valid, input_shape)
    T_train = keras_targets(spec, Y_train)
    T_valid = keras_targets(spec, Y_valid)
    set_seeds(seed)
    with strategy.scope():
        model = build_keras(spec, optimizer, learning_rate, seed)
        model.optimizer.build(model.trainable_variables)
    loss_function = tf.keras.losses.get(spec["loss"])
    images = tf.TensorSpec((None, *input_shape), tf.float32)
    targets = tf.TensorSpec((None, T_train.shape[1]), tf.float32)

    def replica_step(X, T, size):
        with tf.GradientTape() as tape:
            output = model(X, training=True)
            losses = loss_function(T, output)
            loss = tf.reduce_sum(losses) / size
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.stack([tf.reduce_sum(losses), _correct(tf, output, T)])

    # One trace per worker (the signature leaves the batch free): every worker then
    # creates its collective operations in the same order.
    @tf.function(input_signature=[images, targets, tf.TensorSpec((), tf.float32)])
    def train_step(X, T, size):
        """This worker's (sum of losses, right answers) on its slice; updates the weights."""
        return strategy.experimental_local_results(
            strategy.run(replica_step, args=(X, T, size)))[0]

    @tf.function(input_signature=[tf.TensorSpec((2,), tf.float64)])
    def sum_over_workers(values):
        return strategy.reduce(tf.distribute.ReduceOp.SUM,
                               strategy.run(tf.identity, args=(values,)), axis=None)

    history = empty_history()
    m = len(X_train)
    for epoch in range(1, epochs + 1):
        order = epoch_order(seed, epoch, m)
        # Summed here and over the workers once an epoch, not at every step: each
        # collective operation costs a round trip between the workers.
        totals = tf.zeros(2, tf.float64)
        start_time = time.perf_counter()
        for start in range(0, m, batch_size):
            batch = order[start:start + batch_size]
            mine = batch[len(batch) * index // workers:len(batch) * (index + 1) // workers]
            totals += tf.cast(train_step(X_train[mine], T_train[mine], np.float32(len(batch))),
                              tf.float64)
        loss_sum, correct = sum_over_workers(totals).numpy()
        history["epoch_seconds"].append(time.perf_counter() - start_time)
        history["loss"].append(float(loss_sum) / m)
        history["accuracy"].append(float(correct) / m)
        if index == 0:
            val_loss, val_accuracy = evaluate(model, spec, X_valid, T_valid)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
            figures = (history["loss"][-1], history["accuracy"][-1], val_loss, val_accuracy)
            if log is not None:
                log(epoch_line(epoch, *figures))
            if on_event is not None:
                on_event(EpochEnded(epoch, epochs, *figures, history["epoch_seconds"][-1]))
    return history, model, index


def _correct(tf, output, T):
    """Number of right answers in a batch: argmax of a softmax, 0.5 threshold of a sigmoid."""
    if T.shape[-1] == 1:
        right = tf.equal(tf.cast(output > 0.5, tf.float32), T)
    else:
        right = tf.equal(tf.argmax(output, axis=-1), tf.argmax(T, axis=-1))
    return tf.reduce_sum(tf.cast(right, tf.float32))


def evaluate(model, spec, X, targets, batch_size=EVAL_BATCH):
    """Mean loss and accuracy of ``model`` on one worker, without the strategy.

    Parameters
    ----------
    model : keras.Model
        A twin of ``spec`` (its variables may be the strategy's).
    spec : dict
        Its canonical spec.
    X : ndarray of shape (m, h, w, c)
    targets : ndarray of shape (m, k)
        ``keras_training.keras_targets`` of the labels.

    Returns
    -------
    tuple of float
        (loss, accuracy), means over the m examples.
    """
    loss_function = tf.keras.losses.get(spec["loss"])
    loss_sum = correct = 0.0
    for start in range(0, len(X), batch_size):
        output = model(X[start:start + batch_size], training=False)
        T = tf.constant(targets[start:start + batch_size])
        loss_sum += float(tf.reduce_sum(loss_function(T, output)))
        correct += float(_correct(tf, output, T))
    return loss_sum / len(X), correct / len(X)


def write_worker_weights(model, index, environ=None):
    """Write this worker's weights as ``worker-INDEX.npz`` where WORKER_WEIGHTS_ENV says (a check)."""
    environ = os.environ if environ is None else environ
    folder = environ.get(keras_workers.WORKER_WEIGHTS_ENV)
    if folder:
        from convnet import storage
        weights = {f"w{number}": value for number, value in enumerate(model.get_weights())}
        storage.save_npz(os.path.join(folder, f"worker-{index}.npz"), **weights)
